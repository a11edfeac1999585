package fakedbus

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
)

// systemd-resolved's bus name, object and manager interface.
const (
	ResolvedName    = "org.freedesktop.resolve1"
	resolvedPath    = "/org/freedesktop/resolve1"
	resolvedManager = ResolvedName + ".Manager"
)

// Link is what the fake resolved holds for one link: its DNS servers and
// domains, routing-only ones written with resolvectl's "~" prefix.
type Link struct {
	DNS     []netip.Addr
	Domains []string
}

// Resolved is a stand-in for systemd-resolved's per-link configuration
// (org.freedesktop.resolve1.Manager SetLinkDNS, SetLinkDomains,
// RevertLink).
type Resolved struct {
	mu    sync.Mutex
	links map[int32]Link
	calls []string
	fail  map[string]string // member -> D-Bus error name of its next call
	stop  func()
}

// NewResolved returns a resolved with no per-link configuration.
func NewResolved() *Resolved {
	return &Resolved{links: map[int32]Link{}, fail: map[string]string{}}
}

// Serve puts resolved on the bus at addr under its real name until the
// test ends or Stop.
func (r *Resolved) Serve(t testing.TB, addr string) {
	t.Helper()
	r.stop = serve(t, addr, ResolvedName, []export{{&resolvedMgr{r}, nil, resolvedPath, resolvedManager}})
}

// Stop takes resolved off the bus.
func (r *Resolved) Stop() {
	if r.stop != nil {
		r.stop()
	}
}

// Link is the configuration of a link; ok is false when there is none.
func (r *Resolved) Link(ifindex int32) (Link, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.links[ifindex]
	return l, ok
}

// Calls are the calls made, as "Member ifindex args", in order.
func (r *Resolved) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// FailNext makes the next call of a member (e.g. "SetLinkDomains") fail
// with the D-Bus error name given (e.g.
// "org.freedesktop.DBus.Error.AccessDenied").
func (r *Resolved) FailNext(member, errName string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[member] = errName
}

// resolvedMgr is the org.freedesktop.resolve1.Manager interface. The raw
// message is taken to check the signature, which the real resolved
// enforces and godbus's argument decoding would let slip.
type resolvedMgr struct{ r *Resolved }

// dnsServer is one (iay) of SetLinkDNS.
type dnsServer struct {
	Family  int32
	Address []byte
}

// linkDomain is one (sb) of SetLinkDomains.
type linkDomain struct {
	Domain      string
	RoutingOnly bool
}

func (r *Resolved) begin(msg dbus.Message, member, sig string, ifindex int32, args string) *dbus.Error {
	r.calls = append(r.calls, strings.TrimSpace(fmt.Sprintf("%s %d %s", member, ifindex, args)))
	if got := signature(msg); got != sig {
		return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf("%s takes %q, got %q", member, sig, got)})
	}
	if name, ok := r.fail[member]; ok {
		delete(r.fail, member)
		return dbus.NewError(name, []any{"injected failure"})
	}
	if ifindex <= 0 {
		return dbus.NewError("org.freedesktop.resolve1.NoSuchLink", []any{fmt.Sprintf("Link %d not known", ifindex)})
	}
	return nil
}

func signature(msg dbus.Message) string {
	v, ok := msg.Headers[dbus.FieldSignature]
	if !ok {
		return ""
	}
	s, _ := v.Value().(dbus.Signature)
	return s.String()
}

func (m *resolvedMgr) SetLinkDNS(msg dbus.Message, ifindex int32, servers []dnsServer) *dbus.Error {
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	var addrs []netip.Addr
	var text []string
	for _, s := range servers {
		a, ok := netip.AddrFromSlice(s.Address)
		if !ok || (s.Family == 2) != a.Is4() || (s.Family != 2 && s.Family != 10) {
			text = append(text, fmt.Sprintf("bad(%d,%x)", s.Family, s.Address))
			continue
		}
		addrs = append(addrs, a)
		text = append(text, a.String())
	}
	if err := r.begin(msg, "SetLinkDNS", "ia(iay)", ifindex, strings.Join(text, " ")); err != nil {
		return err
	}
	if len(addrs) != len(servers) {
		return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"Invalid DNS server address: " + strings.Join(text, " ")})
	}
	l := r.links[ifindex]
	l.DNS = addrs
	r.links[ifindex] = l
	return nil
}

func (m *resolvedMgr) SetLinkDomains(msg dbus.Message, ifindex int32, domains []linkDomain) *dbus.Error {
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	bad := ""
	for _, d := range domains {
		// resolvectl strips the "~" and sets the flag: a "~" in the name is
		// an invalid domain to resolved.
		if d.Domain == "" || strings.ContainsAny(d.Domain, "~ ") {
			bad = d.Domain
		}
		n := d.Domain
		if d.RoutingOnly {
			n = "~" + n
		}
		names = append(names, n)
	}
	if err := r.begin(msg, "SetLinkDomains", "ia(sb)", ifindex, strings.Join(names, " ")); err != nil {
		return err
	}
	if bad != "" {
		return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf("Invalid search domain %s", bad)})
	}
	l := r.links[ifindex]
	l.Domains = names
	r.links[ifindex] = l
	return nil
}

func (m *resolvedMgr) RevertLink(msg dbus.Message, ifindex int32) *dbus.Error {
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.begin(msg, "RevertLink", "i", ifindex, ""); err != nil {
		return err
	}
	delete(r.links, ifindex)
	return nil
}
