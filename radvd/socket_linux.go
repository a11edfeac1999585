package radvd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// rawConn is the server's socket: raw ICMPv6, SO_BINDTODEVICE to the
// bridge so that nothing is read from or sent to another interface, plus a
// route netlink handle to find the bridge's MAC and link-local address.
//
// It is not ndp.Listen: that binds to the link-local address, which a
// bridge does not have until a port is up and DAD is done, and which may
// change under a running network. The device binding does not change, and
// the source address is picked for every advertisement instead.
type rawConn struct {
	ip      *net.IPConn
	pc      *ipv6.PacketConn
	nl      *netlink.Handle
	ifindex int
	bridge  string

	// The bridge's MAC and link-local source, as link last found them:
	// finding them dumps every IPv6 address of the namespace, which with
	// hundreds of networks sending their first advertisements was most
	// of an idle vnetd's CPU.
	mu        sync.Mutex
	linkMAC   net.HardwareAddr
	linkSrc   netip.Addr
	linkFound time.Time
}

// linkInfoTTL is how long link's answer is reused. A removed source
// address makes the next send fail, which forgets it at once; only a
// changed bridge MAC (set at define time) can go unnoticed this long.
const linkInfoTTL = 10 * time.Minute

// listen opens the socket in the network namespace of the calling thread.
func listen(bridge string) (conn, error) {
	// The handle's sockets are opened now, in this namespace: the
	// look-ups made later from other threads still see the bridge's.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	link, err := nl.LinkByName(bridge)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	c := &rawConn{nl: nl, ifindex: link.Attrs().Index, bridge: bridge}
	if err := c.open(); err != nil {
		nl.Close()
		return nil, fmt.Errorf("ICMPv6 socket on bridge %s: %w", bridge, err)
	}
	return c, nil
}

func (c *rawConn) open() error {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.BindToDevice(int(fd), c.bridge)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_BINDTODEVICE: %w", serr)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return err
	}
	c.ip = pc.(*net.IPConn)
	c.pc = ipv6.NewPacketConn(c.ip)
	ifi := &net.Interface{Index: c.ifindex, Name: c.bridge}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	steps := []struct {
		what string
		do   func() error
	}{
		{"ICMPv6 filter", func() error { return c.pc.SetICMPFilter(&f) }},
		// RFC 4861 §6.1.2: hosts drop advertisements with another hop limit.
		{"hop limit", func() error { return c.pc.SetHopLimit(ndp.HopLimit) }},
		{"multicast hop limit", func() error { return c.pc.SetMulticastHopLimit(ndp.HopLimit) }},
		{"multicast interface", func() error { return c.pc.SetMulticastInterface(ifi) }},
		// Our own advertisements looped back would only reach the host's
		// stack on the bridge, which does not accept them anyway.
		{"multicast loopback", func() error { return c.pc.SetMulticastLoopback(false) }},
		// The hop limit of solicitations must be checked (§6.1.1).
		{"control messages", func() error { return c.pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true) }},
		// The bridge joins ff02::2 itself only while it forwards: an
		// isolated network's does not.
		{"join ff02::2", func() error { return c.pc.JoinGroup(ifi, &net.IPAddr{IP: allRouters.AsSlice()}) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			c.ip.Close()
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

func (c *rawConn) read(b []byte) (int, int, netip.Addr, error) {
	n, cm, src, err := c.pc.ReadFrom(b)
	if err != nil {
		if errors.Is(err, unix.EHOSTUNREACH) {
			// How Linux reports a datagram it dropped for a bad checksum
			// on a blocking read (raw(7)).
			return 0, 0, netip.Addr{}, fmt.Errorf("%w: bad checksum", errMalformed)
		}
		return 0, 0, netip.Addr{}, err
	}
	hop := -1
	if cm != nil {
		hop = cm.HopLimit
		if cm.IfIndex != 0 && cm.IfIndex != c.ifindex {
			return 0, 0, netip.Addr{}, fmt.Errorf("%w: from interface %d", errMalformed, cm.IfIndex)
		}
	}
	var from netip.Addr
	if a, ok := src.(*net.IPAddr); ok {
		from, _ = netip.AddrFromSlice(a.IP)
	}
	return n, hop, from, nil
}

func (c *rawConn) write(b []byte, src, dst netip.Addr) error {
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: src.AsSlice(), IfIndex: c.ifindex}
	// No zone on dst: the interface index in cm (and the device binding)
	// scope it, and a zone name would be resolved in the namespace of
	// whatever thread runs this.
	_, err := c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.WithZone("").AsSlice()})
	if err != nil {
		c.forgetLink() // the source address may be gone
	}
	return err
}

// link is the bridge's MAC and its first link-local address that is
// usable as a source: neither tentative (DAD running) nor failed DAD.
func (c *rawConn) link() (net.HardwareAddr, netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.linkFound.IsZero() && time.Since(c.linkFound) < linkInfoTTL {
		return c.linkMAC, c.linkSrc, nil
	}
	mac, src, err := c.findLink()
	if err == nil {
		c.linkMAC, c.linkSrc, c.linkFound = mac, src, time.Now()
	}
	return mac, src, err
}

// forgetLink makes the next link look again.
func (c *rawConn) forgetLink() {
	c.mu.Lock()
	c.linkFound = time.Time{}
	c.mu.Unlock()
}

func (c *rawConn) findLink() (net.HardwareAddr, netip.Addr, error) {
	l, err := c.nl.LinkByIndex(c.ifindex)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("bridge %s: %w", c.bridge, err)
	}
	addrs, err := c.nl.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("bridge %s: addresses: %w", c.bridge, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Is6() || !ip.IsLinkLocalUnicast() || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		return l.Attrs().HardwareAddr, ip, nil
	}
	return l.Attrs().HardwareAddr, netip.Addr{}, errNotReady
}

func (c *rawConn) close() error {
	err := c.ip.Close()
	c.nl.Close()
	return err
}
