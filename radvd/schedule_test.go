package radvd

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixedRand draws frac of the maximum every time.
func fixedRand(frac float64) func(time.Duration) time.Duration {
	return func(max time.Duration) time.Duration { return time.Duration(float64(max) * frac) }
}

func guest(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 14: byte(i >> 8), 15: byte(i)})
}

// drive runs the scheduler from t0 to end, sending every multicast it asks
// for, and returns the offsets of the multicasts.
func drive(s *scheduler, from, end time.Time) []time.Duration {
	var out []time.Duration
	for {
		n := s.next()
		if n.IsZero() || n.After(end) {
			return out
		}
		if n.Before(from) {
			n = from
		}
		mc, _, _ := s.due(n)
		if mc {
			out = append(out, n.Sub(t0))
			s.sent(n)
		}
	}
}

func TestSchedulerInitialFast(t *testing.T) {
	// With the largest draws: the first advertisement at once, three
	// gaps capped at 16 s, then MaxRtrAdvInterval.
	s := newScheduler(t0, defaultTiming, fixedRand(1))
	got := fmt.Sprint(drive(s, t0, t0.Add(30*time.Minute)))
	want := "[0s 16s 32s 48s 10m48s 20m48s]"
	if got != want {
		t.Errorf("multicast at %s, want %s", got, want)
	}
	// With the smallest: MinRtrAdvInterval once the fast start is over.
	s = newScheduler(t0, defaultTiming, fixedRand(0))
	got = fmt.Sprint(drive(s, t0, t0.Add(10*time.Minute)))
	want = "[0s 16s 32s 48s 4m6s 7m24s]"
	if got != want {
		t.Errorf("multicast at %s, want %s", got, want)
	}
}

func TestSchedulerRandomInterval(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := newScheduler(t0, defaultTiming, func(max time.Duration) time.Duration { return time.Duration(r.Int64N(int64(max) + 1)) })
	at := drive(s, t0, t0.Add(24*time.Hour))
	seen := map[time.Duration]bool{}
	for i := 4; i < len(at); i++ {
		gap := at[i] - at[i-1]
		if gap < MinInterval || gap > MaxInterval {
			t.Fatalf("gap %d is %s, outside [%s, %s]", i, gap, MinInterval, MaxInterval)
		}
		seen[gap] = true
	}
	if len(seen) < len(at)/2 {
		t.Errorf("only %d different gaps in %d advertisements: not randomised", len(seen), len(at))
	}
}

// TestSchedulerSolicitedMulticast: a solicitation from the unspecified
// address brings the multicast forward by at most MAX_RA_DELAY_TIME, and
// never to less than MIN_DELAY_BETWEEN_RAS after the previous one.
func TestSchedulerSolicitedMulticast(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(0.5))
	drive(s, t0, t0.Add(time.Minute)) // past the fast start: 0, 16, 32, 48 s
	last := t0.Add(48 * time.Second)

	now := last.Add(time.Second)
	if v := s.solicit(now, netip.IPv6Unspecified()); v != coalesced {
		t.Fatalf("verdict %v", v)
	}
	if want := last.Add(3*time.Second + 250*time.Millisecond); !s.next().Equal(want) {
		t.Fatalf("next %s, want %s (MIN_DELAY_BETWEEN_RAS plus the delay)", s.next().Sub(t0), want.Sub(t0))
	}
	// A second one does not push it further.
	s.solicit(now.Add(100*time.Millisecond), netip.Addr{})
	mc, answers, uc := s.due(s.next())
	if !mc || answers != 2 || len(uc) != 0 {
		t.Fatalf("due: multicast %v answers %d unicast %v", mc, answers, uc)
	}
	s.sent(last.Add(3250 * time.Millisecond))

	// Long after: just the random delay.
	now = last.Add(time.Minute)
	s.solicit(now, netip.IPv6Unspecified())
	if want := now.Add(250 * time.Millisecond); !s.next().Equal(want) {
		t.Fatalf("next %s, want %s", s.next().Sub(t0), want.Sub(t0))
	}
}

func TestSchedulerUnicast(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(0.5))
	drive(s, t0, t0.Add(time.Minute))
	now := t0.Add(2 * time.Minute)
	g := guest(1)
	if v := s.solicit(now, g.WithZone("br0")); v != scheduled {
		t.Fatalf("first: %v", v)
	}
	if v := s.solicit(now.Add(100*time.Millisecond), g); v != coalesced {
		t.Fatalf("retransmission while pending: %v", v)
	}
	if want := now.Add(250 * time.Millisecond); !s.next().Equal(want) {
		t.Fatalf("next %s, want %s", s.next().Sub(t0), want.Sub(t0))
	}
	mc, _, uc := s.due(now.Add(250 * time.Millisecond))
	if mc || len(uc) != 1 || uc[0] != (unicast{to: g, answers: 2}) {
		t.Fatalf("due: multicast %v unicast %+v", mc, uc)
	}
	if v := s.solicit(now.Add(time.Second), g); v != rateLimited {
		t.Fatalf("again 750 ms after the answer: %v, want rate-limited", v)
	}
	if v := s.solicit(now.Add(1250*time.Millisecond), g); v != scheduled {
		t.Fatalf("again a second after the answer: %v", v)
	}
	// Unicast answers leave the multicast schedule alone.
	if mcAt := s.nextMC; mcAt.Before(t0.Add(48*time.Second + MinInterval)) {
		t.Errorf("multicast moved to %s", mcAt.Sub(t0))
	}
}

// TestSchedulerMulticastCoversUnicast: a solicitation just before a
// multicast advertisement is answered by it.
func TestSchedulerMulticastCoversUnicast(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(1))
	s.due(t0)
	s.sent(t0) // next at 16 s
	if v := s.solicit(t0.Add(15800*time.Millisecond), guest(1)); v != coalesced {
		t.Fatalf("verdict %v, want coalesced into the multicast", v)
	}
	mc, answers, uc := s.due(t0.Add(16 * time.Second))
	if !mc || answers != 1 || len(uc) != 0 {
		t.Fatalf("due: multicast %v answers %d unicast %v", mc, answers, uc)
	}
}

func TestSchedulerRateLimit(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(1))
	s.due(t0)
	s.sent(t0)
	now := t0.Add(time.Second)
	count := func(from, n int, at time.Time) (sch, lim int) {
		for i := from; i < from+n; i++ {
			switch s.solicit(at, guest(i)) {
			case scheduled:
				sch++
			case rateLimited:
				lim++
			}
		}
		return
	}
	if sch, lim := count(0, 30, now); sch != 20 || lim != 10 {
		t.Fatalf("burst of 30 sources: %d scheduled, %d limited, want 20 and 10", sch, lim)
	}
	// Ten a second refill.
	if sch, lim := count(100, 30, now.Add(time.Second)); sch != 10 || lim != 20 {
		t.Fatalf("a second later: %d scheduled, %d limited, want 10 and 20", sch, lim)
	}
	// The table of addresses is bounded too.
	s = newScheduler(t0, defaultTiming, fixedRand(1))
	s.t.unicastRate, s.t.unicastBurst, s.tokens = 1e9, 1e9, 1e9
	s.due(t0)
	s.sent(t0)
	if sch, lim := count(0, 300, now); sch != defaultTiming.maxSources || lim != 300-defaultTiming.maxSources {
		t.Fatalf("300 sources: %d scheduled, %d limited, want %d and the rest", sch, lim, defaultTiming.maxSources)
	}
	s.due(now.Add(time.Second))
	if sch, _ := count(1000, 10, now.Add(3*time.Second)); sch != 10 {
		t.Fatalf("after the answers, old sources are forgotten: %d scheduled", sch)
	}
}

func TestSchedulerChanged(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(1))
	drive(s, t0, t0.Add(time.Hour)) // last at 48 s + n × 600 s
	last := s.lastMC
	// A change a second after an advertisement: the next one 3 s after
	// it, then the fast schedule again.
	s.changed(last.Add(time.Second))
	got := fmt.Sprint(drive(s, last.Add(time.Second), last.Add(time.Minute)))
	base := last.Sub(t0)
	want := fmt.Sprint([]time.Duration{base + 3*time.Second, base + 19*time.Second, base + 35*time.Second, base + 51*time.Second})
	if got != want {
		t.Errorf("after a change: %s, want %s", got, want)
	}
}

func TestSchedulerUnready(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(0))
	now := t0
	var gaps []time.Duration
	for range 6 {
		mc, answers, _ := s.due(now)
		if !mc {
			t.Fatalf("nothing due at %s", now.Sub(t0))
		}
		// What the multicast carried, plus one unicast answer.
		s.unready(now, answers+1)
		gaps = append(gaps, s.next().Sub(now))
		now = s.next()
	}
	if got, want := fmt.Sprint(gaps), "[250ms 500ms 1s 2s 4s 8s]"; got != want {
		t.Errorf("retry gaps %s, want %s", got, want)
	}
	mc, answers, _ := s.due(now)
	if !mc || answers != 6 {
		t.Fatalf("multicast %v answers %d, want the 6 carried over", mc, answers)
	}
	s.sent(now)
	if s.retry != defaultTiming.retryMin || s.initialLeft != 2 {
		t.Errorf("after sending: retry %s, initial left %d", s.retry, s.initialLeft)
	}
}

// TestSchedulerMinDelay: whatever mix of solicitations and changes, two
// multicast advertisements are at least MIN_DELAY_BETWEEN_RAS apart and
// every solicitation is answered within MIN_DELAY_BETWEEN_RAS plus
// MAX_RA_DELAY_TIME.
func TestSchedulerMinDelay(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		s := newScheduler(t0, defaultTiming, func(max time.Duration) time.Duration { return time.Duration(r.Int64N(int64(max) + 1)) })
		var last time.Time
		now := t0
		waiting := map[netip.Addr]time.Time{}
		for range 2000 {
			ev := now.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
			for n := s.next(); !n.IsZero() && !n.After(ev); n = s.next() {
				mc, _, uc := s.due(n)
				if mc {
					if !last.IsZero() && n.Sub(last) < 3*time.Second {
						t.Fatalf("seed %d: multicasts %s apart", seed, n.Sub(last))
					}
					last = n
					s.sent(n)
					clear(waiting)
				}
				for _, u := range uc {
					delete(waiting, u.to)
				}
			}
			now = ev
			for a, at := range waiting {
				if now.Sub(at) > 3500*time.Millisecond {
					t.Fatalf("seed %d: solicitation from %s at %s unanswered at %s", seed, a, at.Sub(t0), now.Sub(t0))
				}
			}
			switch k := r.IntN(10); {
			case k < 5:
				src := netip.IPv6Unspecified()
				if s.solicit(now, src) != rateLimited {
					if _, ok := waiting[src]; !ok {
						waiting[src] = now
					}
				}
			case k < 9:
				src := guest(r.IntN(5))
				if s.solicit(now, src) != rateLimited {
					if _, ok := waiting[src]; !ok {
						waiting[src] = now
					}
				}
			default:
				s.changed(now)
			}
		}
	}
}

func TestSchedulerSolicitationRestartsBackOff(t *testing.T) {
	s := newScheduler(t0, defaultTiming, fixedRand(0))
	now := t0
	for range 10 { // an idle bridge: no carrier, no address
		s.due(now)
		s.unready(now, 0)
		now = s.next()
	}
	if s.retry != defaultTiming.retryMax {
		t.Fatalf("retry %s after a long wait, want the cap %s", s.retry, defaultTiming.retryMax)
	}
	s.solicit(now, netip.Addr{}) // a guest came up
	s.due(s.next())
	s.unready(s.next(), 1)
	if gap := s.next().Sub(now); gap > time.Second {
		t.Fatalf("next try %s after a solicitation, want the back-off restarted", gap)
	}
}
