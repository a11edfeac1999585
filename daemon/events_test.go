package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
	"github.com/vnetd/vnetd/dhcpd"
	"github.com/vnetd/vnetd/leases"
)

// drain returns what a subscription holds now, as "type network [detail]".
func drain(sub *Subscription) []string {
	var out []string
	for {
		select {
		case e, ok := <-sub.C():
			if !ok {
				return append(out, "closed")
			}
			s := e.Type + " " + e.Network
			for _, d := range []string{e.Port, e.IP, e.MAC, e.Hostname} {
				if d != "" {
					s += " " + d
				}
			}
			out = append(out, s)
		default:
			return out
		}
	}
}

func TestEventBusFiltersAndDropsSlowReaders(t *testing.T) {
	b := NewEventBus()
	all := b.Subscribe("")
	one := b.Subscribe("b")
	b.Publish(api.Event{Type: api.EventStarted, Network: "a"})
	b.Publish(api.Event{Type: api.EventStarted, Network: "b"})
	if diff := cmp.Diff([]string{"started a", "started b"}, drain(all)); diff != "" {
		t.Errorf("all (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"started b"}, drain(one)); diff != "" {
		t.Errorf("network b (-want +got):\n%s", diff)
	}

	// one reads nothing more: it overflows and is dropped, all keeps up.
	for i := 0; i < eventBuffer+10; i++ {
		b.Publish(api.Event{Type: api.EventUpdated, Network: "b"})
		drain(all)
	}
	got := drain(one)
	if len(got) != eventBuffer+2 || got[eventBuffer] != "overflow " || got[eventBuffer+1] != "closed" {
		t.Fatalf("slow reader got %d events ending %v", len(got), got[max(0, len(got)-3):])
	}
	b.Publish(api.Event{Type: api.EventStopped, Network: "b"})
	if diff := cmp.Diff([]string{"stopped b"}, drain(all)); diff != "" {
		t.Errorf("after the drop (-want +got):\n%s", diff)
	}
	if n := b.count.Load(); n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	all.Close()
	all.Close()
	b.Close()
	if got := drain(b.Subscribe("")); len(got) != 1 || got[0] != "closed" {
		t.Fatalf("subscription to a closed bus: %v", got)
	}
}

func TestManagerEventsInOrder(t *testing.T) {
	e := newEnv(t)
	sub := e.m.Events().Subscribe("")
	defer sub.Close()
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	e.host.links["vnet0"] = true
	if _, err := e.m.CreatePort("default", []byte(portXML), PortOptions{Attach: "vnet0", TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
	e.m.DeletePort("default", portID)
	e.m.Update("default", api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: -1,
		XML: "<host mac='52:54:00:00:00:07' ip='192.168.122.7'/>"})
	e.m.Destroy("default")
	e.m.Undefine("default")
	e.m.Start("default") // fails: no event
	want := []string{
		"defined default",
		"started default",
		"port-created default " + portID,
		"port-deleted default " + portID,
		"updated default",
		"stopped default",
		"undefined default",
	}
	if diff := cmp.Diff(want, drain(sub)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// fakeLeaseStore commits every write at once.
type fakeLeaseStore struct {
	stored []leases.Lease
	fail   error
}

func (f *fakeLeaseStore) Apply(c leases.Changes, done func(error)) { done(f.fail) }
func (f *fakeLeaseStore) List(string) ([]leases.Lease, error)      { return f.stored, nil }

func TestLeaseEvents(t *testing.T) {
	ip := netip.MustParseAddr
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	store := &fakeLeaseStore{stored: []leases.Lease{{Network: "n", IP: ip("10.0.0.5"), MAC: mac("52:54:00:00:00:05")}}}
	bus := NewEventBus()
	sub := bus.Subscribe("")
	l, err := newLeaseEvents(store, "n", bus)
	if err != nil {
		t.Fatal(err)
	}
	put := func(addr, hw, host string) leases.Changes {
		return leases.Changes{Put: []leases.Lease{{Network: "n", IP: ip(addr), MAC: mac(hw), Hostname: host}}}
	}
	steps := []struct {
		name string
		c    leases.Changes
		fail error
		want []string
	}{
		{"new lease", put("10.0.0.6", "52:54:00:00:00:06", "vm6"), nil,
			[]string{"lease-added n 10.0.0.6 52:54:00:00:00:06 vm6"}},
		{"renewal of a stored lease", put("10.0.0.5", "52:54:00:00:00:05", ""), nil, nil},
		{"renewal", put("10.0.0.6", "52:54:00:00:00:06", "vm6"), nil, nil},
		{"address changes hands", put("10.0.0.6", "52:54:00:00:00:07", ""), nil,
			[]string{"lease-removed n 10.0.0.6 52:54:00:00:00:06", "lease-added n 10.0.0.6 52:54:00:00:00:07"}},
		{"failed write", put("10.0.0.8", "52:54:00:00:00:08", ""), errors.New("disk full"), nil},
		{"release", leases.Changes{Delete: []leases.Key{{Network: "n", IP: ip("10.0.0.5")}}}, nil,
			[]string{"lease-removed n 10.0.0.5 52:54:00:00:00:05"}},
		{"release of an unknown address", leases.Changes{Delete: []leases.Key{{Network: "n", IP: ip("10.0.0.9")}}}, nil, nil},
		{"DHCPv6 lease without MAC", leases.Changes{Put: []leases.Lease{{Network: "n", IP: ip("fd00::5"), DUID: "00:04:aa"}}}, nil,
			[]string{"lease-added n fd00::5 00:04:aa"}},
	}
	for _, s := range steps {
		store.fail = s.fail
		var doneErr error
		l.Apply(s.c, func(err error) { doneErr = err })
		if doneErr != s.fail {
			t.Errorf("%s: done(%v), want %v", s.name, doneErr, s.fail)
		}
		if diff := cmp.Diff(s.want, drain(sub)); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestEventsOverTheAPI(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(e.dir, "vnetd.sock")
	ln, err := listenSocket(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httpTestServer{ln: ln}
	srv.serve(Handler(e.m, e.m.log))
	defer srv.close()
	c := client.New(sock)
	ctx := context.Background()

	got := make(chan api.Event, 10)
	streamErr := make(chan error, 1)
	go func() {
		streamErr <- c.Events(ctx, "default", func(ev api.Event) bool {
			got <- ev
			return ev.Type != api.EventStopped
		})
	}()
	waitFor(t, func() bool { return e.m.Events().count.Load() == 1 })
	other := []byte(`<network><name>other</name><bridge name='vbro'/></network>`)
	if _, err := c.Define(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { _, err := c.Define(ctx, []byte(natXML)); return err },
		func() error { return c.Start(ctx, "default") },
		func() error { return c.Destroy(ctx, "default") },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	var types []string
	for len(types) < 3 {
		select {
		case ev := <-got:
			if ev.Network != "default" || ev.Time.IsZero() {
				t.Errorf("event %+v", ev)
			}
			types = append(types, ev.Type)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far: %v", types)
		}
	}
	if diff := cmp.Diff([]string{"defined", "started", "stopped"}, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if err := <-streamErr; err != nil {
		t.Fatalf("stream: %v", err)
	}

	// A UUID must name a network; the stream ends when the daemon's does.
	var apiErr *api.Error
	if err := c.Events(ctx, "0b7aa1b3-0f5a-4a8a-9e38-3b6c3c0b1a11", func(api.Event) bool { return true }); !errors.As(err, &apiErr) || apiErr.Code != api.CodeNotFound {
		t.Fatalf("events of an unknown uuid: %v", err)
	}
	go func() { streamErr <- c.Events(ctx, "", func(api.Event) bool { return true }) }()
	waitFor(t, func() bool { return e.m.Events().count.Load() == 1 })
	e.m.Events().Close()
	if err := <-streamErr; !errors.Is(err, client.ErrEventsEnded) {
		t.Fatalf("stream after the bus closed: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The DHCP servers' write path goes through leaseEvents: with nobody
// listening it must cost next to nothing.
func BenchmarkLeaseEventsApply(b *testing.B) {
	for _, listeners := range []int{-1, 0, 1} {
		name := fmt.Sprintf("listeners=%d", listeners)
		if listeners < 0 {
			name = "plain-store" // the baseline: no leaseEvents at all
		}
		b.Run(name, func(b *testing.B) {
			bus := NewEventBus()
			for range listeners {
				sub := bus.Subscribe("")
				go func() {
					for range sub.C() {
					}
				}()
				defer sub.Close()
			}
			var l dhcpd.LeaseStore = &fakeLeaseStore{}
			if listeners >= 0 {
				l, _ = newLeaseEvents(l, "n", bus)
			}
			mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
			done := func(error) {}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// Alternate two holders so every write is an event.
				mac[5] = byte(i & 1)
				l.Apply(leases.Changes{Put: []leases.Lease{{Network: "n", IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), MAC: mac}}}, done)
			}
		})
	}
}
