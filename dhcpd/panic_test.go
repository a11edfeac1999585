package dhcpd

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// panicky is a clock that panics while armed: the servers read it while
// deciding, inside the handling of one packet.
type panicky struct {
	armed atomic.Bool
	at    time.Time
}

func (p *panicky) now() time.Time {
	if p.armed.Load() {
		panic("clock on fire")
	}
	return p.at
}

// syncBuffer is a log destination the servers' goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), "msg=\""+msg+"\"")
}

const panics = 200

// TestServer4PanicCounted: packets whose handling panics are counted as
// Panic (not as malformed), logged once however many there are, and the
// server goes on serving.
func TestServer4PanicCounted(t *testing.T) {
	clock := &panicky{at: t04}
	s, out := newTestServer4(t, natNet4(defaultRange4), newMemStore4(), clock.now)
	var logs syncBuffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	b := discover4(macA_4).ToBytes()
	clock.armed.Store(true)
	for range panics {
		s.serveSync(t.Context(), b)
	}
	clock.armed.Store(false)
	if st := s.Stats(); st.Panic != panics || st.Dropped != 0 {
		t.Errorf("stats %+v after %d panics, want Panic %d and nothing dropped", st, panics, panics)
	}
	if n := logs.count("DHCPv4 packet handling panicked"); n != 1 {
		t.Errorf("%d panics logged %d lines, want 1:\n%s", panics, n, logs.b.String())
	}
	if !strings.Contains(logs.b.String(), "clock on fire") || !strings.Contains(logs.b.String(), "stack=") {
		t.Errorf("the line lacks the panic or its stack:\n%s", logs.b.String())
	}
	s.serveSync(t.Context(), b)
	if got := out.replies(t); len(got) != 1 || typeOf4(got[0]) != "OFFER" {
		t.Errorf("after the panics: %d replies, want one OFFER", len(got))
	}
}

// TestServer6PanicCounted is TestServer4PanicCounted for DHCPv6.
func TestServer6PanicCounted(t *testing.T) {
	clock := &panicky{at: t06}
	var logs syncBuffer
	s := newTestServer6(t, func(c *Config6) { c.Now, c.Log = clock.now, slog.New(slog.NewTextHandler(&logs, nil)) })
	e := &env6{t: t, now: t06}
	sol := e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()).ToBytes()
	clock.armed.Store(true)
	for range panics {
		s.serve6(sol)
	}
	clock.armed.Store(false)
	if st := s.Stats(); st.Panic != panics || st.Malformed != 0 || st.Advertises != 0 {
		t.Errorf("stats %+v after %d panics, want Panic %d, nothing malformed or answered", st, panics, panics)
	}
	if n := logs.count("DHCPv6 message handling panicked"); n != 1 {
		t.Errorf("%d panics logged %d lines, want 1:\n%s", panics, n, logs.b.String())
	}
	s.serve6(sol)
	if st := s.Stats(); st.Advertises != 1 {
		t.Errorf("after the panics: stats %+v, want one Advertise", st)
	}
}
