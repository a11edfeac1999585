package leases

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "leases.log")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mac(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameLease(a, b Lease) bool {
	if !a.Expiry.Equal(b.Expiry) {
		return false
	}
	a.Expiry, b.Expiry = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func sampleLeases(t testing.TB) []Lease {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	return []Lease{
		{
			Network: "default", Kind: V4, IP: netip.MustParseAddr("192.168.122.133"), Prefix: 24,
			MAC: mac(t, "52:54:00:83:69:b7"), ClientID: "01:52:54:00:83:69:b7", Hostname: "ubuntu",
			Expiry: exp,
		},
		{
			Network: "default", Kind: V4, IP: netip.MustParseAddr("192.168.122.2"), Prefix: 24,
			MAC: mac(t, "52:54:00:00:00:02"),
		},
		{
			Network: "default", Kind: V6, IP: netip.MustParseAddr("fd00::10"), Prefix: 64,
			MAC: mac(t, "52:54:00:00:00:03"), DUID: "00:01:00:01:2a:bc:de:f0:52:54:00:00:00:03",
			IAID: 0xdeadbeef, Hostname: "six", Expiry: exp.Add(time.Hour).In(time.FixedZone("x", 3600)),
		},
		{
			Network: "other", Kind: V4, IP: netip.MustParseAddr("10.0.0.5"), Prefix: 8,
			MAC: mac(t, "52:54:00:00:00:05"),
		},
	}
}

func TestKindString(t *testing.T) {
	for _, tc := range []struct {
		k    Kind
		want string
	}{{V4, "ipv4"}, {V6, "ipv6"}, {0, "Kind(0)"}, {7, "Kind(7)"}} {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tc.k, got, tc.want)
		}
	}
}

func TestExpired(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		name   string
		expiry time.Time
		want   bool
	}{
		{"infinite", time.Time{}, false},
		{"future", now.Add(time.Second), false},
		{"now", now, false},
		{"past", now.Add(-time.Second), true},
	} {
		if got := (Lease{Expiry: tc.expiry}).Expired(now); got != tc.want {
			t.Errorf("%s: Expired = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRoundTripAndDurability(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	in := sampleLeases(t)
	for _, l := range in {
		if err := s.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		got, err := s.List("default")
		if err != nil {
			t.Fatal(err)
		}
		// Sorted by IP: 192.168.122.2, 192.168.122.133, fd00::10.
		want := []Lease{in[1], in[0], in[2]}
		if len(got) != len(want) {
			t.Fatalf("List = %d leases, want %d: %+v", len(got), len(want), got)
		}
		for i := range want {
			if !sameLease(got[i], want[i]) {
				t.Errorf("lease %d:\n got %+v\nwant %+v", i, got[i], want[i])
			}
		}
		nets, err := s.Networks()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(nets, []string{"default", "other"}) {
			t.Errorf("Networks = %q", nets)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2)
}

func TestPutReplacesSameIP(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	l := sampleLeases(t)[0]
	if err := s.Put(ctx, l); err != nil {
		t.Fatal(err)
	}
	l.Hostname = "renamed"
	l.IP = netip.MustParseAddr("::ffff:192.168.122.133") // same key once unmapped
	if err := s.Put(ctx, l); err != nil {
		t.Fatal(err)
	}
	got, err := s.List("default")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Hostname != "renamed" || got[0].IP != netip.MustParseAddr("192.168.122.133") {
		t.Fatalf("List = %+v", got)
	}
}

func TestPutInvalid(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ip4 := netip.MustParseAddr("10.0.0.1")
	ip6 := netip.MustParseAddr("fd00::1")
	for _, tc := range []struct {
		name string
		l    Lease
	}{
		{"no network", Lease{Kind: V4, IP: ip4}},
		{"NUL in network", Lease{Network: "a\x00b", Kind: V4, IP: ip4}},
		{"no IP", Lease{Network: "n", Kind: V4}},
		{"no kind", Lease{Network: "n", IP: ip4}},
		{"v4 kind v6 ip", Lease{Network: "n", Kind: V4, IP: ip6}},
		{"v6 kind v4 ip", Lease{Network: "n", Kind: V6, IP: ip4}},
		{"v6 kind mapped ip", Lease{Network: "n", Kind: V6, IP: netip.MustParseAddr("::ffff:10.0.0.1")}},
	} {
		if err := s.Put(ctx, tc.l); err == nil {
			t.Errorf("%s: Put succeeded", tc.name)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, Lease{Network: "n", Kind: V4, IP: ip4}); err == nil {
		t.Error("Put with cancelled context succeeded")
	}
	nets, err := s.Networks()
	if err != nil || len(nets) != 0 {
		t.Errorf("Networks = %q, %v; want none", nets, err)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	in := sampleLeases(t)
	for _, l := range in {
		if err := s.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		network string
		ip      string
	}{
		{"default", "192.168.122.133"},
		{"default", "fd00::10"},
		{"default", "192.168.122.99"}, // missing is fine
		{"nosuch", "10.0.0.5"},
	} {
		if err := s.Delete(ctx, tc.network, netip.MustParseAddr(tc.ip)); err != nil {
			t.Errorf("Delete(%s, %s): %v", tc.network, tc.ip, err)
		}
	}
	got, err := s.List("default")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !sameLease(got[0], in[1]) {
		t.Errorf("after Delete, List = %+v", got)
	}
	if got, _ := s.List("other"); len(got) != 1 {
		t.Errorf("other network touched: %+v", got)
	}
}

func TestNetworkPrefixIsolation(t *testing.T) {
	// "a" must not see leases of "ab" or "a b", and vice versa.
	ctx := context.Background()
	s, _ := openTest(t)
	names := []string{"a", "ab", "a b", "b"}
	for i, n := range names {
		l := Lease{Network: n, Kind: V4, IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})}
		if err := s.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		got, err := s.List(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Network != n {
			t.Errorf("List(%q) = %+v", n, got)
		}
	}
	nets, err := s.Networks()
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(nets, want) {
		t.Errorf("Networks = %q, want %q", nets, want)
	}
}

func TestConcurrentPutsGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	var mu sync.Mutex
	commits := 0
	s.commitHook = func(int) {
		mu.Lock()
		commits++
		mu.Unlock()
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			l := Lease{
				Network: "default", Kind: V4,
				IP:  netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
				MAC: net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)},
			}
			errs <- s.Put(ctx, l)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	ncommits := commits
	mu.Unlock()
	t.Logf("%d puts in %d commits", n, ncommits)
	if ncommits >= n {
		t.Errorf("%d puts took %d commits; want group commit", n, ncommits)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.List("default")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("List = %d leases, want %d", len(got), n)
	}
	for i, l := range got {
		want := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if l.IP != want || l.MAC[5] != byte(i) {
			t.Errorf("lease %d = %s %s", i, l.IP, l.MAC)
		}
	}
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	leases := []struct {
		network string
		ip      string
		expiry  time.Time
		keep    bool
	}{
		{"n1", "10.0.0.1", time.Time{}, true},
		{"n1", "10.0.0.2", now.Add(-time.Minute), false},
		{"n1", "10.0.0.3", now.Add(time.Minute), true},
		{"n1", "fd00::1", now.Add(-time.Second), false},
		{"n2", "10.1.0.1", now.Add(-time.Hour), false},
		{"n3", "10.2.0.1", now, true},
	}
	for _, l := range leases {
		ip := netip.MustParseAddr(l.ip)
		k := V4
		if ip.Is6() {
			k = V6
		}
		if err := s.Put(ctx, Lease{Network: l.network, Kind: k, IP: ip, Expiry: l.expiry}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Sweep(now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("Sweep deleted %d, want 3", n)
	}
	for _, l := range leases {
		got, err := s.List(l.network)
		if err != nil {
			t.Fatal(err)
		}
		found := slices.ContainsFunc(got, func(g Lease) bool { return g.IP.String() == l.ip })
		if found != l.keep {
			t.Errorf("%s/%s present=%v, want %v", l.network, l.ip, found, l.keep)
		}
	}
	if n, err := s.Sweep(now); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v", n, err)
	}
	nets, _ := s.Networks()
	if !slices.Equal(nets, []string{"n1", "n3"}) {
		t.Errorf("Networks = %q", nets)
	}
}

func TestDeleteNetwork(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, l := range sampleLeases(t) {
		if err := s.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNetwork("default"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork("nosuch"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.List("default"); err != nil || len(got) != 0 {
		t.Errorf("List(default) = %+v, %v", got, err)
	}
	if got, _ := s.List("other"); len(got) != 1 {
		t.Errorf("List(other) = %+v", got)
	}
	if nets, _ := s.Networks(); !slices.Equal(nets, []string{"other"}) {
		t.Errorf("Networks = %q", nets)
	}
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ch, cancel := s.Watch("default")
	chOther, cancelOther := s.Watch("other")
	defer cancelOther()

	expect := func(what string, ch <-chan struct{}, want bool) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !want {
				t.Errorf("%s: unexpected notification (open=%v)", what, ok)
			}
		case <-time.After(50 * time.Millisecond):
			if want {
				t.Errorf("%s: no notification", what)
			}
		}
	}
	l := sampleLeases(t)[0]
	// Several changes before the reader looks coalesce into one.
	for range 3 {
		if err := s.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	expect("put", ch, true)
	expect("coalesced", ch, false)
	expect("other network", chOther, false)

	if err := s.Delete(ctx, "default", l.IP); err != nil {
		t.Fatal(err)
	}
	expect("delete", ch, true)

	l.Expiry = time.Unix(1, 0)
	if err := s.Put(ctx, l); err != nil {
		t.Fatal(err)
	}
	expect("put expired", ch, true)
	if _, err := s.Sweep(time.Now()); err != nil {
		t.Fatal(err)
	}
	expect("sweep", ch, true)

	if err := s.Put(ctx, l); err != nil {
		t.Fatal(err)
	}
	expect("put again", ch, true)
	if err := s.DeleteNetwork("default"); err != nil {
		t.Fatal(err)
	}
	expect("delete network", ch, true)

	cancel()
	cancel() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
	if err := s.Put(ctx, l); err != nil { // no watcher: must not block or panic
		t.Fatal(err)
	}

	s.Close()
	if _, ok := <-chOther; ok {
		t.Error("channel open after Close")
	}
	ch3, cancel3 := s.Watch("default")
	if _, ok := <-ch3; ok {
		t.Error("Watch after Close returned an open channel")
	}
	cancel3()
}

func BenchmarkPutParallel(b *testing.B) {
	s, _ := openTest(b)
	ctx := context.Background()
	var mu sync.Mutex
	var next uint32
	b.ReportAllocs()
	// Many DHCP clients at once: 256 goroutines per CPU (a DHCP server at
	// 20000 leases/s has hundreds waiting for their commit).
	b.SetParallelism(256)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			next++
			i := next
			mu.Unlock()
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], 10<<24|i&0xffffff)
			l := Lease{
				Network: "bench", Kind: V4, IP: netip.AddrFrom4(a), Prefix: 8,
				MAC:      net.HardwareAddr{0x52, 0x54, 0, a[1], a[2], a[3]},
				Hostname: fmt.Sprintf("host%d", i),
				Expiry:   time.Now().Add(time.Hour),
			}
			if err := s.Put(ctx, l); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// Apply commits in submission order: the last decision about an address
// wins, and every done is called in that order.
func TestApplyOrder(t *testing.T) {
	s, _ := openTest(t)
	ip := netip.MustParseAddr("10.0.0.9")
	var mu sync.Mutex
	var got []int
	var wg sync.WaitGroup
	const n = 501 // the last change is a Put
	wg.Add(n)
	for i := range n {
		c := Changes{Put: []Lease{{Network: "default", Kind: V4, IP: ip, MAC: net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}}}}
		if i%3 == 1 {
			c = Changes{Delete: []Key{{Network: "default", IP: ip}}}
		}
		s.Apply(c, func(err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	if !slices.IsSorted(got) {
		t.Errorf("done calls out of submission order: %v", got)
	}
	ls, err := s.List("default")
	if err != nil {
		t.Fatal(err)
	}
	wantPut := (n-1)%3 != 1
	if !wantPut {
		if len(ls) != 0 {
			t.Fatalf("leases after a final delete: %v", ls)
		}
		return
	}
	if last := n - 1; len(ls) != 1 || ls[0].MAC[4] != byte(last>>8) || ls[0].MAC[5] != byte(last) {
		t.Fatalf("leases = %v, want the put of change %d", ls, n-1)
	}
}

func TestApplyBadChangeFailsAlone(t *testing.T) {
	s, _ := openTest(t)
	good := Lease{Network: "default", Kind: V4, IP: netip.MustParseAddr("10.0.0.2"), MAC: mac(t, "52:54:00:00:00:02")}
	bad := Lease{Network: "default", Kind: V4} // no address
	errs := make(chan error, 2)
	s.Apply(Changes{Put: []Lease{bad}}, func(err error) { errs <- err })
	s.Apply(Changes{Put: []Lease{good}}, func(err error) { errs <- err })
	if err := <-errs; err == nil {
		t.Error("a lease without an address was stored")
	}
	if err := <-errs; err != nil {
		t.Errorf("good lease: %v", err)
	}
}

func TestCloseCommitsQueuedAndRefusesLater(t *testing.T) {
	s, path := openTest(t)
	const n = 100
	errs := make(chan error, n)
	for i := range n {
		l := Lease{Network: "default", Kind: V4, IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i)}}
		s.Apply(Changes{Put: []Lease{l}}, func(err error) { errs <- err })
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("queued write failed at Close: %v", err)
		}
	}
	if err := s.Put(context.Background(), Lease{Network: "default", Kind: V4, IP: netip.MustParseAddr("10.0.1.1"), MAC: mac(t, "52:54:00:00:01:01")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if ls, _ := s2.List("default"); len(ls) != n {
		t.Errorf("%d leases after reopen, want %d", len(ls), n)
	}
}

func TestWatchRelevantFiltersCommits(t *testing.T) {
	s, _ := openTest(t)
	named := func(c Changes) bool {
		for _, l := range c.Put {
			if l.Hostname != "" {
				return true
			}
		}
		return false
	}
	ch, cancel := s.WatchRelevant("default", named)
	defer cancel()
	all, cancelAll := s.Watch("default")
	defer cancelAll()
	got := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}
	ls := sampleLeases(t)
	if err := s.Put(context.Background(), ls[1]); err != nil { // no hostname
		t.Fatal(err)
	}
	if got(ch) || !got(all) {
		t.Fatal("an irrelevant commit woke the filtered watcher, or the plain one slept")
	}
	if err := s.Put(context.Background(), ls[0]); err != nil { // hostname "ubuntu"
		t.Fatal(err)
	}
	if !got(ch) {
		t.Fatal("a relevant commit did not wake the filtered watcher")
	}
	if _, err := s.Sweep(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if !got(ch) {
		t.Fatal("a sweep must wake every watcher")
	}
}
