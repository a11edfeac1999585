package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiterOncePerIntervalPerKind(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &Limiter{Every: 10 * time.Second, Now: func() time.Time { return now }}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))

	for i := 0; i < 5; i++ {
		l.Log(log, slog.LevelWarn, "bad packet", "i", i)
		l.Log(log, slog.LevelWarn, "other", "i", i)
	}
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("logged %d lines in one interval, want 2 (one per kind):\n%s", got, buf.String())
	}
	buf.Reset()
	now = now.Add(10 * time.Second)
	l.Log(log, slog.LevelWarn, "bad packet")
	if !strings.Contains(buf.String(), "suppressed=4") {
		t.Fatalf("next line does not count the suppressed ones: %q", buf.String())
	}
}

func TestLimiterBoundsKinds(t *testing.T) {
	l := &Limiter{}
	for i := 0; i < 10*maxKinds; i++ {
		l.Allow(strings.Repeat("x", i%300) + string(rune('a'+i%26)))
	}
	if len(l.kinds) > maxKinds {
		t.Fatalf("%d kinds held, bound is %d", len(l.kinds), maxKinds)
	}
}

func TestLimiterDisabledLevelCostsNothing(t *testing.T) {
	l := &Limiter{}
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError}))
	l.Log(log, slog.LevelDebug, "quiet")
	if len(l.kinds) != 0 {
		t.Fatal("a disabled level still took a slot")
	}
}
