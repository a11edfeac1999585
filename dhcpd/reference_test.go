package dhcpd

import (
	"context"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The forms of the servers' steps that tests call directly: whole frames
// and destinations of library messages (against which the in-place
// encoding is compared), and one datagram or completion at a time.

// frame4 is the frame of payload, built as appendFrame4 builds a reply's.
func frame4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, frameHeadersLen4+len(payload))
	copy(b[frameHeadersLen4:], payload)
	fillFrame4(b, dstMAC, srcMAC, src, dst, sport, dport)
	return b
}

// dest4 is destOf4 of a library request and reply.
func dest4(req, resp *dhcpv4.DHCPv4) (net.HardwareAddr, netip.Addr) {
	r := requestFrom4(req)
	return destOf4(&r, &answer4{mt: resp.MessageType(), yiaddr: ip4(resp.YourIPAddr)})
}

// complete answers one completion at once, as the replier does in chunks.
func (s *Server4) complete(c *completion4) {
	if s.settled(c) {
		s.answer(&c.req, &c.ans, c.committed())
	}
}

// macFrom6 is mac6 as a net.HardwareAddr, nil if there is none.
func macFrom6(duid []byte, peer netip.Addr) net.HardwareAddr {
	if mac, ok := mac6(duid, peer); ok {
		return net.HardwareAddr(mac[:])
	}
	return nil
}

// serve handles one datagram and sends its answer, if it needs no store
// write, at once.
func (s *Server6) serve(ctx context.Context, p packet6) {
	s.serveIn(ctx, &worker6{}, p)
}

// complete answers one completion at once, as the replier does in chunks.
func (s *Server6) complete(c *completion6) {
	if s.settled(c) {
		s.queueAnswer(nil, c)
	}
}
