package dhcpd

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vnetd/vnetd/leases"
)

// TestOrder6 checks that store writes of one address run in the order
// Handle decided them, and that other addresses do not wait.
func TestOrder6(t *testing.T) {
	o := &order6{tail: map[netip.Addr]chan struct{}{}}
	x, y := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	release := o.enter(nil, []netip.Addr{x})
	put := o.enter([]leases.Lease{{IP: x}}, nil)
	other := o.enter([]leases.Lease{{IP: y}}, []netip.Addr{y})
	ctx := context.Background()
	if !other.wait(ctx) {
		t.Fatal("another address waited")
	}
	other.done(o)
	waited := make(chan bool, 1)
	go func() { waited <- put.wait(ctx) }()
	select {
	case <-waited:
		t.Fatal("Put of x did not wait for the Delete of x")
	case <-time.After(50 * time.Millisecond):
	}
	if !release.wait(ctx) {
		t.Fatal("first writer waited")
	}
	release.done(o)
	if !<-waited {
		t.Fatal("Put of x never ran")
	}
	put.done(o)
	if len(o.tail) != 0 {
		t.Errorf("tails left: %v", o.tail)
	}
	// A cancelled context stops a waiter.
	a := o.enter(nil, []netip.Addr{x})
	b := o.enter(nil, []netip.Addr{x})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if b.wait(cctx) {
		t.Error("wait ignored its context")
	}
	b.done(o)
	a.done(o)
	if len(o.tail) != 0 {
		t.Errorf("tails left: %v", o.tail)
	}
}
