package dhcpd

import (
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// request4 is what the handler reads of a DHCPv4 request. The server parses
// it from the datagram in place (parseRequest4): dhcpv4.FromBytes made an
// options map, a slice per option and a net.IP per address for every
// packet: 7% of the server's CPU, and garbage to collect.
// Handle makes one from a *dhcpv4.DHCPv4 (requestFrom4) for its callers.
// The slices alias the datagram or the message: they live as long as it.
type request4 struct {
	op     dhcpv4.OpcodeType
	htype  iana.HWType
	xid    dhcpv4.TransactionID
	flags  uint16
	chaddr net.HardwareAddr
	// ciaddr is the header's ciaddr as ip4 reads it; ciaddrRaw is the field
	// itself, for the logs (nil when made from a message).
	ciaddr    netip.Addr
	ciaddrRaw net.IP
	relayed   bool // giaddr set
	opts      reqOpts4
}

// reqOpts4 are the options the handler reads, as dhcpv4.Options.Get
// returns them: the values of repeated instances concatenated (RFC 3396),
// nil when absent or empty on the wire.
type reqOpts4 struct {
	msgType, clientID, hostname, reqIP, serverID, lease, prl []byte
}

// slot is where option code is kept, nil for the options not read.
func (o *reqOpts4) slot(code uint8) *[]byte {
	switch code {
	case 53:
		return &o.msgType
	case 61:
		return &o.clientID
	case 12:
		return &o.hostname
	case 50:
		return &o.reqIP
	case 54:
		return &o.serverID
	case 51:
		return &o.lease
	case 55:
		return &o.prl
	}
	return nil
}

// BOOTP layout (RFC 2131 §2): the fixed header, then the magic cookie and
// the options.
const (
	bootpHeaderLen4 = 236
	optionsAt4      = bootpHeaderLen4 + 4
	bootpMinLen4    = 300
)

var magicCookie4 = [4]byte{99, 130, 83, 99}

var errMalformed4 = errors.New("malformed DHCP packet")

// parseRequest4 reads b as dhcpv4.FromBytes does and accepts exactly what
// it accepts (FuzzParseRequest4). The error of a rejected packet is
// FromBytes's own: rejecting is rare, and its words reach the logs.
func parseRequest4(b []byte, r *request4) error {
	if !r.parse(b) {
		if _, err := dhcpv4.FromBytes(b); err != nil {
			return err
		}
		return errMalformed4 // never: the fuzz target holds them equal
	}
	return nil
}

func (r *request4) parse(b []byte) bool {
	if len(b) < optionsAt4 || [4]byte(b[bootpHeaderLen4:optionsAt4]) != magicCookie4 {
		return false
	}
	hlen := min(int(b[2]), 16)
	*r = request4{
		op:        dhcpv4.OpcodeType(b[0]),
		htype:     iana.HWType(b[1]),
		xid:       dhcpv4.TransactionID(b[4:8]),
		flags:     uint16(b[10])<<8 | uint16(b[11]),
		chaddr:    net.HardwareAddr(b[28 : 28+hlen : 28+hlen]),
		ciaddr:    ip4(b[12:16]),
		ciaddrRaw: net.IP(b[12:16:16]),
		relayed:   ip4(b[24:28]).IsValid(),
	}
	// The options up to End: each but Pad has a length, and its data must
	// be there; a packet without End is refused, as FromBytes does, unless
	// it has no options at all.
	o := b[optionsAt4:]
	if len(o) == 0 {
		return true
	}
	for len(o) > 0 {
		code := o[0]
		switch code {
		case 0:
			o = o[1:]
			continue
		case 255:
			r.opts.normalise()
			return true
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			return false
		}
		n := int(o[1])
		data := o[2 : 2+n : 2+n]
		o = o[2+n:]
		if p := r.opts.slot(code); p != nil {
			if *p == nil {
				*p = data
			} else if n > 0 {
				// Repeated: concatenated into a copy, never into b.
				*p = append((*p)[:len(*p):len(*p)], data...)
			}
		}
	}
	return false
}

// normalise makes empty options nil, as FromBytes leaves them.
func (o *reqOpts4) normalise() {
	for _, p := range []*[]byte{&o.msgType, &o.clientID, &o.hostname, &o.reqIP, &o.serverID, &o.lease, &o.prl} {
		if len(*p) == 0 {
			*p = nil
		}
	}
}

// requestFrom4 is the request4 of a parsed message; m and its Options are
// not nil.
func requestFrom4(m *dhcpv4.DHCPv4) request4 {
	get := func(c dhcpv4.OptionCode) []byte { return m.Options.Get(c) }
	return request4{
		op:     m.OpCode,
		htype:  m.HWType,
		xid:    m.TransactionID,
		flags:  m.Flags,
		chaddr: m.ClientHWAddr,
		ciaddr: ip4(m.ClientIPAddr),
		// ciaddrRaw: only the server logs it, and it parses datagrams.
		relayed: ip4(m.GatewayIPAddr).IsValid(),
		opts: reqOpts4{
			msgType:  get(dhcpv4.OptionDHCPMessageType),
			clientID: get(dhcpv4.OptionClientIdentifier),
			hostname: get(dhcpv4.OptionHostName),
			reqIP:    get(dhcpv4.OptionRequestedIPAddress),
			serverID: get(dhcpv4.OptionServerIdentifier),
			lease:    get(dhcpv4.OptionIPAddressLeaseTime),
			prl:      get(dhcpv4.OptionParameterRequestList),
		},
	}
}

// messageType is dhcpv4.DHCPv4.MessageType: None unless option 53 is one
// byte.
func (r *request4) messageType() dhcpv4.MessageType {
	if len(r.opts.msgType) != 1 {
		return dhcpv4.MessageTypeNone
	}
	return dhcpv4.MessageType(r.opts.msgType[0])
}

// hostName is dhcpv4.DHCPv4.HostName: option 12 without trailing NULs.
func (r *request4) hostName() string { return strings.TrimRight(string(r.opts.hostname), "\x00") }

func (r *request4) isBroadcast() bool { return r.flags&0x8000 != 0 }

// requested is dhcpv4.DHCPv4.IsOptionRequested: true without a parameter
// request list.
func (r *request4) requested(code dhcpv4.OptionCode) bool {
	if r.opts.prl == nil {
		return true
	}
	for _, c := range r.opts.prl {
		if c == code.Code() {
			return true
		}
	}
	return false
}

// optIP4 is an option carrying exactly one IPv4 address.
func optIP4(v []byte) netip.Addr {
	if len(v) != 4 {
		return netip.Addr{}
	}
	return ip4(v)
}

// logIP4 is an address option as dhcpv4's getters (RequestedIPAddress,
// ServerIdentifier) return it, for the logs.
func logIP4(v []byte) net.IP {
	if len(v) != 4 {
		return nil
	}
	return net.IP(v)
}
