package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/vnetd/vnetd/internal/nettest"
	"golang.org/x/sys/unix"
)

// capture reads every frame that arrives on one interface of a namespace,
// as tcpdump would, through an AF_PACKET socket: it sees what reached the
// clients before their own stack (or perfdhcp) made anything of it.
type capture struct {
	fd   int
	quit chan struct{}
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// startCapture opens the socket on ifname inside ns and hands each incoming
// frame (Ethernet header first) to handle, from one goroutine, until stop.
func startCapture(ns, ifname string, handle func(frame []byte, at time.Time)) (*capture, error) {
	c := &capture{fd: -1, quit: make(chan struct{}), done: make(chan struct{})}
	err := nettest.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding the packet socket to %s: %w", ifname, err)
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns, err)
	}
	// A few thousand exchanges a second must not overflow the default
	// buffer while the test's goroutines are descheduled.
	unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	// Reads time out so that stop is noticed.
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := unix.Recvfrom(c.fd, buf, 0)
			select {
			case <-c.quit:
				return
			default:
			}
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			handle(buf[:n], time.Now())
		}
	}()
	return c, nil
}

// stop ends the capture and returns how many frames the kernel dropped
// because the socket's buffer was full (those ACKs were not counted).
func (c *capture) stop() (drops uint32, err error) {
	close(c.quit)
	<-c.done
	st, serr := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if serr != nil {
		return 0, serr
	}
	return st.Drops, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpPayload returns the UDP payload of an Ethernet frame carrying UDP over
// IPv4 (or IPv6 with v6) from port src to port dst (no VLAN tag, no IPv6
// extension headers: what a bridge hands a DHCP client).
func udpPayload(frame []byte, v6 bool, src, dst uint16) ([]byte, bool) {
	if len(frame) < 14 {
		return nil, false
	}
	var udp []byte
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case unix.ETH_P_IP:
		if v6 {
			return nil, false
		}
		ip := frame[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_UDP {
			return nil, false
		}
		// Fragments other than the first carry no UDP header.
		if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			return nil, false
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || total < ihl || total > len(ip) {
			return nil, false
		}
		udp = ip[ihl:total]
	case unix.ETH_P_IPV6:
		if !v6 {
			return nil, false
		}
		ip := frame[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 || ip[6] != unix.IPPROTO_UDP {
			return nil, false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return nil, false
		}
		udp = ip[40 : 40+plen]
	default:
		return nil, false
	}
	if len(udp) < 8 || binary.BigEndian.Uint16(udp[0:2]) != src || binary.BigEndian.Uint16(udp[2:4]) != dst {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(udp[4:6]))
	if n < 8 || n > len(udp) {
		return nil, false
	}
	return udp[8:n], true
}

// ack4 is a DHCPACK as a client saw it: the address the server committed
// to for a client hardware address.
type ack4 struct {
	MAC string
	IP  netip.Addr
}

// parseAck4 recognises a server's DHCPACK in an Ethernet frame.
func parseAck4(frame []byte) (ack4, bool) {
	payload, ok := udpPayload(frame, false, dhcpv4.ServerPort, dhcpv4.ClientPort)
	if !ok {
		return ack4{}, false
	}
	m, err := dhcpv4.FromBytes(payload)
	if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != dhcpv4.MessageTypeAck {
		return ack4{}, false
	}
	ip, ok := netip.AddrFromSlice(m.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return ack4{}, false // an ACK to an INFORM commits no address
	}
	return ack4{MAC: m.ClientHWAddr.String(), IP: ip}, true
}

// reply6 is one address a DHCPv6 Reply gave a client's IA_NA.
type reply6 struct {
	DUID string // hex bytes joined with ':', as net-dhcp-leases prints it
	IAID uint32
	IP   netip.Addr
}

// parseReply6 recognises a server's Reply in an Ethernet frame and returns
// the IA_NA addresses it assigns (valid lifetime above 0, no error status).
func parseReply6(frame []byte) ([]reply6, bool) {
	payload, ok := udpPayload(frame, true, dhcpv6.DefaultServerPort, dhcpv6.DefaultClientPort)
	if !ok {
		return nil, false
	}
	m, err := dhcpv6.MessageFromBytes(payload)
	if err != nil || m.MessageType != dhcpv6.MessageTypeReply {
		return nil, false
	}
	cid := m.Options.ClientID()
	if cid == nil {
		return nil, false
	}
	duid := colonHex(cid.ToBytes())
	var out []reply6
	for _, ia := range m.Options.IANA() {
		if st := ia.Options.Status(); st != nil && st.StatusCode != 0 {
			continue
		}
		for _, a := range ia.Options.Addresses() {
			ip, ok := netip.AddrFromSlice(a.IPv6Addr)
			if !ok || a.ValidLifetime == 0 {
				continue
			}
			out = append(out, reply6{DUID: duid, IAID: binary.BigEndian.Uint32(ia.IaId[:]), IP: ip})
		}
	}
	return out, len(out) > 0
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(parts, ":")
}
