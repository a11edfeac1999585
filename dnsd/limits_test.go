package dnsd

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestTCPLimiter(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("fe80::1")
	l := newTCPLimiter(4, 2)
	for i, step := range []struct {
		release bool
		client  netip.Addr
		want    rejectReason
	}{
		{false, a, admitted},
		{false, a, admitted},
		{false, a, rejectPerClient},
		{false, b, admitted},
		{false, c, admitted},
		{false, c, rejectGlobal}, // over both: the global bound is said first
		{false, b, rejectGlobal},
		{true, a, admitted},
		{false, b, admitted},
		{true, c, admitted},
		{false, b, rejectPerClient},
		{false, a, admitted},
		{false, a, rejectGlobal},
	} {
		if step.release {
			l.release(step.client)
			continue
		}
		if got := l.acquire(step.client); got != step.want {
			t.Fatalf("step %d, %s: %v, want %v", i, step.client, got, step.want)
		}
	}
	if l.open() != 4 || len(l.byAddr) != 2 {
		t.Errorf("%d open, %d clients; want 4, 2", l.open(), len(l.byAddr))
	}
	l.release(a)
	l.release(a)
	l.release(b)
	l.release(b)
	if l.open() != 0 || len(l.byAddr) != 0 {
		t.Errorf("after releasing all: %d open, clients %v", l.open(), l.byAddr)
	}
}

// TestLimitListener: on loopback, the connections beyond the bound are
// closed as soon as accepted, counted, and logged once however many; a
// connection closed gives its slot back.
func TestLimitListener(t *testing.T) {
	f := newFixture(t, testXML, nil)
	var logs bytes.Buffer
	f.s.h.log = slog.New(slog.NewTextHandler(&logs, nil))
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &limitListener{Listener: inner, lim: newTCPLimiter(100, 2), h: f.s.h}
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	// served reports whether a new connection was handed to the server
	// rather than reset.
	served := func() (net.Conn, bool) {
		t.Helper()
		c, err := net.Dial("tcp4", inner.Addr().String())
		if err != nil {
			if errors.Is(err, syscall.ECONNRESET) {
				return nil, false
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		return c, errors.As(err, &ne) && ne.Timeout() // open, nothing to read
	}
	var kept []net.Conn
	for i := range 5 {
		c, ok := served()
		if ok != (i < 2) {
			t.Fatalf("connection %d served: %v, want %v", i, ok, i < 2)
		}
		if ok {
			kept = append(kept, c)
		}
	}
	if n := f.s.h.st.tcpPerClient.Load(); n != 3 {
		t.Errorf("%d counted per client, want 3", n)
	}
	if n := strings.Count(logs.String(), "too many DNS TCP connections"); n != 1 {
		t.Errorf("%d log lines for 3 refused connections, want 1:\n%s", n, logs.String())
	}
	// The server closes one: its slot is free again.
	(<-accepted).Close()
	if _, ok := served(); !ok {
		t.Error("no connection served after one was closed")
	}
	if _, ok := served(); ok {
		t.Error("a third connection served")
	}
	kept[0].Close()
}

// TestTCPForwardsBounded: a query over TCP that must wait for an upstream
// takes a slot of the same bound as UDP's; when none is free it is
// dropped and counted, not forwarded.
func TestTCPForwardsBounded(t *testing.T) {
	f := newFixture(t, testXML, nil)
	up := newUpstream(t, nil)
	f.route("198.51.100.1", up)
	for range maxForwards {
		f.s.h.sem <- struct{}{}
	}
	w := &recorder{remote: &net.TCPAddr{IP: guest4.AsSlice(), Port: 5353}}
	f.s.h.ServeDNS(w, newQuery("www.example.org.", dns.TypeA))
	if len(w.msgs) != 0 || len(up.queries()) != 0 {
		t.Fatalf("over the bound: %d answers, %d upstream queries; want none", len(w.msgs), len(up.queries()))
	}
	if st := f.s.Stats(); st.Overflow != 1 {
		t.Errorf("Overflow %d, want 1", st.Overflow)
	}
	<-f.s.h.sem
	if m := f.ask(guest4, true, newQuery("www.example.org.", dns.TypeA)); len(m.Answer) != 1 {
		t.Errorf("with a slot free: %v", m)
	}
	if n := len(f.s.h.sem); n != maxForwards-1 {
		t.Errorf("%d slots held after the answer, want %d: the query did not give its slot back", n, maxForwards-1)
	}
}

// TestPanicCounted: a query whose handling panics is counted as such (not
// as malformed), and a client sending many gets one log line.
func TestPanicCounted(t *testing.T) {
	f := newFixture(t, testXML, nil)
	var logs bytes.Buffer
	f.s.h.log = slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		func() {
			defer f.s.h.recoverQuery(&f.s.h.st, guest4)
			panic("crafted")
		}()
	}
	st := f.s.Stats()
	if st.Panics != 3 || st.Malformed != 0 {
		t.Errorf("Panics %d, Malformed %d; want 3, 0", st.Panics, st.Malformed)
	}
	if n := strings.Count(logs.String(), "DNS query handling panicked"); n != 1 {
		t.Errorf("%d log lines for 3 panics, want 1:\n%s", n, logs.String())
	}
	f.advance(time.Minute) // the limiter follows the server's clock
	func() {
		defer f.s.h.recoverQuery(&f.s.h.st, guest4)
		panic("crafted")
	}()
	if !strings.Contains(logs.String(), "suppressed=2") {
		t.Errorf("the next line does not say how many were suppressed:\n%s", logs.String())
	}
}
