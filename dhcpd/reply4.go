package dhcpd

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func u32opt4(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// answer4 is a reply the handler decided, as the few values it is made of.
// The server encodes it straight into the frame that carries it
// (appendTo); Handle's callers get it as a *dhcpv4.DHCPv4 (message). The
// two are the same bytes (TestServeBytes4, FuzzServeBytes4): building a
// message, with its map of freshly allocated options, then marshalling it
// made a third of the allocations of a request.
type answer4 struct {
	mt    dhcpv4.MessageType // MessageTypeNone: no reply
	cfg   *config4           // the configuration it was decided with
	htype iana.HWType
	xid   dhcpv4.TransactionID
	flags uint16
	// chaddr and clientID (option 61, echoed: RFC 6842; nil: none) alias
	// the request.
	chaddr   net.HardwareAddr
	clientID []byte
	ciaddr   netip.Addr // invalid: 0.0.0.0
	// yiaddr is the address given for secs seconds; invalid: none (NAK,
	// ACK of an INFORM).
	yiaddr   netip.Addr
	secs     uint32
	hostname string // option 12; "": none
	msg      string // option 56 of a NAK
}

func (a *answer4) ok() bool { return a.mt != dhcpv4.MessageTypeNone }

// newAnswer4 is the BOOTREPLY skeleton for req: same transaction, flags and
// client hardware address; the client identifier echoed (RFC 6842).
func (h *Handler4) newAnswer4(cl *client4, mt dhcpv4.MessageType) answer4 {
	a := answer4{mt: mt, cfg: h.pool.cfg, htype: cl.htype, xid: cl.xid, flags: cl.flags, chaddr: cl.mac}
	if id := cl.id; len(id) > 0 {
		a.clientID = id
	}
	return a
}

// reply builds an OFFER or ACK giving yiaddr for secs seconds; an invalid
// yiaddr makes the ACK of an INFORM (no address, no lease times).
func (h *Handler4) reply(cl *client4, mt dhcpv4.MessageType, yiaddr netip.Addr, secs uint32) answer4 {
	a := h.newAnswer4(cl, mt)
	if mt == dhcpv4.MessageTypeAck && cl.ciaddr.IsValid() {
		a.ciaddr = cl.ciaddr
	}
	if yiaddr.IsValid() {
		a.yiaddr, a.secs = yiaddr, secs
	}
	if ho := cl.host; ho != nil && ho.label != "" && yiaddr == ho.ip && cl.wantsName {
		a.hostname = firstLabel4(ho.name)
	}
	return a
}

// nak builds a DHCPNAK carrying msg (option 56).
func (h *Handler4) nak(cl *client4, msg string) answer4 {
	a := h.newAnswer4(cl, dhcpv4.MessageTypeNak)
	a.msg = msg
	return a
}

// message is a as the *dhcpv4.DHCPv4 Handle returns; nil when there is no
// reply. Its options are its own: the caller may change them.
func (a *answer4) message() *dhcpv4.DHCPv4 {
	if !a.ok() {
		return nil
	}
	cfg := a.cfg
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        a.htype,
		TransactionID: a.xid,
		Flags:         a.flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  append(net.HardwareAddr(nil), a.chaddr...),
		Options:       dhcpv4.Options{},
	}
	o := r.Options
	o[dhcpv4.OptionDHCPMessageType.Code()] = []byte{byte(a.mt)}
	o[dhcpv4.OptionServerIdentifier.Code()] = cfg.server.AsSlice()
	if a.clientID != nil {
		o[dhcpv4.OptionClientIdentifier.Code()] = append([]byte(nil), a.clientID...)
	}
	if a.mt == dhcpv4.MessageTypeNak {
		o[dhcpv4.OptionMessage.Code()] = []byte(a.msg)
		return r
	}
	if a.ciaddr.IsValid() {
		r.ClientIPAddr = net.IP(a.ciaddr.AsSlice())
	}
	if a.yiaddr.IsValid() {
		r.YourIPAddr = net.IP(a.yiaddr.AsSlice())
		o[dhcpv4.OptionIPAddressLeaseTime.Code()] = u32opt4(a.secs)
		if a.secs != infiniteLease4 {
			o[dhcpv4.OptionRenewTimeValue.Code()] = u32opt4(a.secs / 2)
			o[dhcpv4.OptionRebindingTimeValue.Code()] = u32opt4(uint32(uint64(a.secs) * 7 / 8))
		}
	}
	// <bootp>/<tftp>: the BOOTP header fields, never options
	// (dhcp-no-override).
	if cfg.nextServer.IsValid() {
		r.ServerIPAddr = net.IP(cfg.nextServer.AsSlice())
	}
	r.BootFileName = cfg.bootFile

	o[dhcpv4.OptionSubnetMask.Code()] = []byte(cfg.mask)
	o[dhcpv4.OptionBroadcastAddress.Code()] = cfg.broadcast.AsSlice()
	if cfg.router {
		o[dhcpv4.OptionRouter.Code()] = cfg.server.AsSlice()
	}
	if cfg.dns {
		o[dhcpv4.OptionDomainNameServer.Code()] = cfg.server.AsSlice()
	}
	if cfg.domain != "" {
		o[dhcpv4.OptionDomainName.Code()] = []byte(cfg.domain)
	}
	if cfg.mtu != 0 {
		o[dhcpv4.OptionInterfaceMTU.Code()] = binary.BigEndian.AppendUint16(nil, cfg.mtu)
	}
	if a.hostname != "" {
		o[dhcpv4.OptionHostName.Code()] = []byte(a.hostname)
	}
	return r
}

// appendTo appends a to b as message().ToBytes() would write it: the BOOTP
// header, the options in ascending code order (dhcpv4.Options.Marshal;
// none of ours is 82, which it puts last), End, and Pad up to the 300
// bytes of a BOOTP message.
func (a *answer4) appendTo(b []byte) []byte {
	cfg := a.cfg
	start := len(b)
	b = append(b, make([]byte, optionsAt4)...)
	m := b[start:]
	m[0] = byte(dhcpv4.OpcodeBootReply)
	m[1] = byte(a.htype)
	m[2] = byte(len(a.chaddr))
	copy(m[4:8], a.xid[:])
	binary.BigEndian.PutUint16(m[10:12], a.flags)
	nak := a.mt == dhcpv4.MessageTypeNak
	if !nak {
		if a.ciaddr.IsValid() {
			v := a.ciaddr.As4()
			copy(m[12:16], v[:])
		}
		if a.yiaddr.IsValid() {
			v := a.yiaddr.As4()
			copy(m[16:20], v[:])
		}
		if cfg.nextServer.IsValid() {
			v := cfg.nextServer.As4()
			copy(m[20:24], v[:])
		}
		copy(m[108:108+127], cfg.bootFile)
	}
	copy(m[28:28+16], a.chaddr)
	copy(m[bootpHeaderLen4:], magicCookie4[:])

	if !nak {
		b = append(b, cfg.opts.low...) // 1, 3, 6
		if a.hostname != "" {
			b = appendOpt4(b, dhcpv4.OptionHostName.Code(), a.hostname)
		}
		b = append(b, cfg.opts.high...) // 15, 26, 28
		if a.yiaddr.IsValid() {
			b = appendU32Opt4(b, dhcpv4.OptionIPAddressLeaseTime.Code(), a.secs)
		}
	}
	b = append(b, dhcpv4.OptionDHCPMessageType.Code(), 1, byte(a.mt))
	b = append(b, cfg.opts.serverID[:]...) // 54
	if nak {
		b = appendOpt4(b, dhcpv4.OptionMessage.Code(), a.msg)
	} else if a.yiaddr.IsValid() && a.secs != infiniteLease4 {
		b = appendU32Opt4(b, dhcpv4.OptionRenewTimeValue.Code(), a.secs/2)
		b = appendU32Opt4(b, dhcpv4.OptionRebindingTimeValue.Code(), uint32(uint64(a.secs)*7/8))
	}
	if a.clientID != nil {
		b = appendOpt4(b, dhcpv4.OptionClientIdentifier.Code(), a.clientID)
	}
	b = append(b, dhcpv4.OptionEnd.Code())
	if n := len(b) - start; n < bootpMinLen4 {
		b = append(b, make([]byte, bootpMinLen4-n)...)
	}
	return b
}

// appendOpt4 appends option code with value v as dhcpv4.Options.Marshal
// does: a value longer than 255 bytes as several options (RFC 3396), an
// empty one as code and zero length.
func appendOpt4[T []byte | string](b []byte, code uint8, v T) []byte {
	if len(v) == 0 {
		return append(b, code, 0)
	}
	for len(v) > 0 {
		n := min(len(v), 255)
		b = append(b, code, byte(n))
		b = append(b, v[:n]...)
		v = v[n:]
	}
	return b
}

func appendU32Opt4(b []byte, code uint8, v uint32) []byte {
	return binary.BigEndian.AppendUint32(append(b, code, 4), v)
}
