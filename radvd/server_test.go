package radvd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
)

// fakeConn stands in for the bridge's socket: the test feeds solicitations
// in and reads what the server wrote.
type fakeConn struct {
	in     chan fakeIn
	out    chan fakeOut
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex
	ready bool
	ll    netip.Addr
	mac   net.HardwareAddr
}

type fakeIn struct {
	b   []byte
	hop int
	src netip.Addr
	err error
}

type fakeOut struct {
	ra       *ndp.RouterAdvertisement
	src, dst netip.Addr
}

var bridgeLL = netip.MustParseAddr("fe80::5054:ff:fe12:3456")

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan fakeIn, 100), out: make(chan fakeOut, 1000), closed: make(chan struct{}), ready: true, ll: bridgeLL, mac: testMAC}
}

func (c *fakeConn) read(b []byte) (int, int, netip.Addr, error) {
	select {
	case p := <-c.in:
		if p.err != nil {
			return 0, 0, netip.Addr{}, p.err
		}
		return copy(b, p.b), p.hop, p.src, nil
	case <-c.closed:
		return 0, 0, netip.Addr{}, net.ErrClosed
	}
}

func (c *fakeConn) write(b []byte, src, dst netip.Addr) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		return err
	}
	c.out <- fakeOut{ra: m.(*ndp.RouterAdvertisement), src: src, dst: dst}
	return nil
}

func (c *fakeConn) link() (net.HardwareAddr, netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return c.mac, netip.Addr{}, errNotReady
	}
	return c.mac, c.ll, nil
}

func (c *fakeConn) close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeConn) setReady(r bool) {
	c.mu.Lock()
	c.ready = r
	c.mu.Unlock()
}

// next is the next advertisement written, within d.
func (c *fakeConn) next(t *testing.T, d time.Duration) fakeOut {
	t.Helper()
	select {
	case o := <-c.out:
		return o
	case <-time.After(d):
		t.Fatalf("no advertisement within %s", d)
		return fakeOut{}
	}
}

// none checks that nothing is written within d.
func (c *fakeConn) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case o := <-c.out:
		t.Fatalf("unexpected advertisement to %s:\n%s", o.dst, describeRA(o.ra))
	case <-time.After(d):
	}
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeServer is a server of testdata/networks/NAME.xml on a fakeConn, with
// MIN_DELAY_BETWEEN_RAS and the retry back-off shortened.
func fakeServer(t *testing.T, name string) (*Server, *fakeConn) {
	t.Helper()
	s, err := New(Config{Network: parseNet(t, "testdata/networks/"+name+".xml"), Bridge: "br-test", Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeConn()
	s.listen = func(string) (conn, error) { return c, nil }
	s.timing.minDelay = 200 * time.Millisecond
	s.timing.retryMin, s.timing.retryMax = 50*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { s.Close() })
	return s, c
}

func TestServerAdvertises(t *testing.T) {
	s, c := fakeServer(t, "slaac")
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := c.next(t, time.Second)
	if first.dst != allNodes || first.src != bridgeLL {
		t.Fatalf("first advertisement from %s to %s, want %s to ff02::1", first.src, first.dst, bridgeLL)
	}
	want, _ := ParamsFromNetwork(s.cfg.Network, testMAC)
	if got, w := describeRA(first.ra), describeRA(BuildRA(want)); got != w {
		t.Fatalf("got:\n%s\nwant:\n%s", got, w)
	}

	// A solicitation is answered by unicast within MAX_RA_DELAY_TIME.
	start := time.Now()
	c.in <- fakeIn{b: marshalRS(t, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: guestMAC}), hop: 255, src: guestLL.WithZone("br-test")}
	ans := c.next(t, time.Second)
	// MAX_RA_DELAY_TIME is 500 ms; the rest is slack for a loaded machine.
	if ans.dst != guestLL || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("answer to %s after %s", ans.dst, time.Since(start))
	}

	// Invalid ones are counted and not answered.
	c.in <- fakeIn{b: marshalRS(t), hop: 64, src: guest(2)}
	c.in <- fakeIn{err: errMalformed}
	c.in <- fakeIn{b: []byte{133, 0, 0}, hop: 255, src: guest(3)}
	c.none(t, 700*time.Millisecond)

	waitFor(time.Second, func() bool { return s.Stats().Sent == 2 })
	st := s.Stats()
	if st.Sent != 2 || st.Multicast != 1 || st.Received != 4 || st.Answered != 1 || st.Malformed != 3 || st.SendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerRateLimit(t *testing.T) {
	s, c := fakeServer(t, "slaac")
	// No refill while the test feeds solicitations, however slowly.
	s.timing.unicastRate = 1e-6
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.next(t, time.Second)
	for i := range 50 {
		c.in <- fakeIn{b: marshalRS(t), hop: 255, src: guest(i)}
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().Received < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond)
	st := s.Stats()
	if st.RateLimited != 30 || st.Answered != 20 || len(c.out) != 20 {
		t.Errorf("50 solicitations at once: %d answered, %d rate-limited, %d sent; want 20, 30 and 20 (%+v)", st.Answered, st.RateLimited, len(c.out), st)
	}
}

// TestServerUpdate: a change goes out promptly, withdrawing what is gone;
// an update that changes nothing sends nothing.
func TestServerUpdate(t *testing.T) {
	s, c := fakeServer(t, "slaac")
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.next(t, time.Second)
	n := s.cfg.Network.Clone()
	if err := s.Update(n); err != nil {
		t.Fatal(err)
	}
	c.none(t, 400*time.Millisecond)

	n = n.Clone()
	n.MTU = 1450
	n.IPs[1].Address = netip.MustParseAddr("fd00:99::1")
	if err := s.Update(n); err != nil {
		t.Fatal(err)
	}
	o := c.next(t, time.Second)
	got := describeRA(o.ra)
	for _, want := range []string{
		"mtu 1450\n",
		"prefix fd00:99::/64 on-link yes autonomous yes valid 86400s preferred 14400s\n",
		"prefix fd00:10::/64 on-link yes autonomous yes valid 0s preferred 0s\n",
		"rdnss [fd00:99::1] lifetime 1200s\n",
		"rdnss [fd00:10::1] lifetime 0s\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after the update, the advertisement lacks %q:\n%s", want, got)
		}
	}
	// A bad definition is refused and the old advertisement stays.
	bad := n.Clone()
	bad.IPs = bad.IPs[:1]
	if err := s.Update(bad); !errors.Is(err, ErrNoIPv6) {
		t.Errorf("update without IPv6: %v", err)
	}
	if s.current().MTU != 1450 {
		t.Error("a refused update changed the advertisement")
	}
}

func TestServerClose(t *testing.T) {
	before := runtime.NumGoroutine()
	s, c := fakeServer(t, "slaac")
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.next(t, time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o := c.next(t, 100*time.Millisecond)
	if o.dst != allNodes || o.ra.RouterLifetime != 0 {
		t.Fatalf("final advertisement to %s with router lifetime %s", o.dst, o.ra.RouterLifetime)
	}
	if len(o.ra.Options) == 0 {
		t.Error("final advertisement without its options")
	}
	select {
	case <-c.closed:
	default:
		t.Error("socket still open after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Nothing of the server outlives Close.
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before Start", n, before)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	c.none(t, 100*time.Millisecond)
}

func TestServerDetachAndCancel(t *testing.T) {
	s, c := fakeServer(t, "slaac")
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.next(t, time.Second)
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	c.none(t, 100*time.Millisecond)

	s, c = fakeServer(t, "slaac")
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.next(t, time.Second)
	cancel()
	select {
	case <-c.closed:
	case <-time.After(time.Second):
		t.Fatal("socket open a second after the context ended")
	}
	// Close after the end of ctx: no final advertisement, nothing left
	// running.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.none(t, 100*time.Millisecond)
}

// TestServerNotReady: while the bridge has no usable link-local address
// nothing is sent; once it has one, a multicast answers the waiting
// solicitations.
func TestServerNotReady(t *testing.T) {
	s, c := fakeServer(t, "isolated")
	c.setReady(false)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.in <- fakeIn{b: marshalRS(t), hop: 255, src: guestLL}
	c.none(t, 700*time.Millisecond)
	c.setReady(true)
	o := c.next(t, time.Second)
	if o.dst != allNodes || o.ra.RouterLifetime != 0 {
		t.Fatalf("advertisement to %s with router lifetime %s", o.dst, o.ra.RouterLifetime)
	}
	// The counters follow the write.
	waitFor(time.Second, func() bool { return s.Stats().Answered == 1 })
	if st := s.Stats(); st.Answered != 1 || st.SendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	// No link-local at Close: nothing to withdraw, and no error.
	c.setReady(false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.none(t, 50*time.Millisecond)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
