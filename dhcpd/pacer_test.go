package dhcpd

import (
	"testing"
	"time"
)

func TestPacerSpreadsABatchOverItsWindow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		since     time.Duration // since the previous batch
		wantSleep []time.Duration
	}{
		{"small batch at once", paceChunk, time.Millisecond, nil},
		{"two chunks", paceChunk + 1, 4 * time.Millisecond, []time.Duration{2 * time.Millisecond}},
		{"four chunks", 4 * paceChunk, 8 * time.Millisecond, []time.Duration{2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond}},
		{"window capped", 2 * paceChunk, time.Second, []time.Duration{maxPaceWindow / 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := time.Unix(1000, 0)
			var slept []time.Duration
			p := &pacer{now: func() time.Time { return clock }, sleep: func(d time.Duration) { slept = append(slept, d) }}
			p.last = clock.Add(-tc.since)
			var order []int
			p.spread(tc.n, func(lo, hi int) {
				if hi-lo > paceChunk {
					t.Fatalf("chunk [%d, %d) longer than %d", lo, hi, paceChunk)
				}
				for i := lo; i < hi; i++ {
					order = append(order, i)
				}
			})
			for i, v := range order {
				if v != i {
					t.Fatalf("sent out of order: %v", order)
				}
			}
			if len(order) != tc.n {
				t.Fatalf("sent %d of %d", len(order), tc.n)
			}
			if len(slept) != len(tc.wantSleep) {
				t.Fatalf("slept %v, want %v", slept, tc.wantSleep)
			}
			for i := range slept {
				if slept[i] != tc.wantSleep[i] {
					t.Fatalf("slept %v, want %v", slept, tc.wantSleep)
				}
			}
			if !p.last.Equal(clock) {
				t.Fatal("the batch's arrival was not remembered")
			}
		})
	}
}
