package dnsd

import (
	"testing"
	"time"
)

func TestLatencyBucket(t *testing.T) {
	last := len(UpstreamLatencyBounds)
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{time.Millisecond, 0}, // bounds are inclusive, as Prometheus's le
		{time.Millisecond + 1, 1},
		{3 * time.Millisecond, 2},
		{time.Second, 9},
		{5 * time.Second, last - 1},
		{5*time.Second + 1, last},
		{time.Hour, last},
	} {
		if got := latencyBucket(tc.d); got != tc.want {
			t.Errorf("latencyBucket(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestUpstreamLatencyBoundsAscend(t *testing.T) {
	for i := 1; i < len(UpstreamLatencyBounds); i++ {
		if UpstreamLatencyBounds[i] <= UpstreamLatencyBounds[i-1] {
			t.Fatalf("bound %d (%v) not above bound %d (%v)", i, UpstreamLatencyBounds[i], i-1, UpstreamLatencyBounds[i-1])
		}
	}
}
