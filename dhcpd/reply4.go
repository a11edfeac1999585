package dhcpd

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func u32opt4(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// newReply4 is the BOOTREPLY skeleton for req: same transaction, flags and
// client hardware address; the client identifier echoed (RFC 6842).
func (h *Handler4) newReply4(cl *client4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	req := cl.req
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  append(net.HardwareAddr(nil), req.ClientHWAddr...),
		Options:       dhcpv4.Options{},
	}
	r.Options[dhcpv4.OptionDHCPMessageType.Code()] = []byte{byte(mt)}
	r.Options[dhcpv4.OptionServerIdentifier.Code()] = h.pool.cfg.server.AsSlice()
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		r.Options[dhcpv4.OptionClientIdentifier.Code()] = append([]byte(nil), id...)
	}
	return r
}

// reply builds an OFFER or ACK giving yiaddr for secs seconds; an invalid
// yiaddr makes the ACK of an INFORM (no address, no lease times).
func (h *Handler4) reply(cl *client4, mt dhcpv4.MessageType, yiaddr netip.Addr, secs uint32) *dhcpv4.DHCPv4 {
	cfg := h.pool.cfg
	r := h.newReply4(cl, mt)
	if mt == dhcpv4.MessageTypeAck && cl.ciaddr.IsValid() {
		r.ClientIPAddr = net.IP(cl.ciaddr.AsSlice())
	}
	o := r.Options
	if yiaddr.IsValid() {
		r.YourIPAddr = net.IP(yiaddr.AsSlice())
		o[dhcpv4.OptionIPAddressLeaseTime.Code()] = u32opt4(secs)
		if secs != infiniteLease4 {
			o[dhcpv4.OptionRenewTimeValue.Code()] = u32opt4(secs / 2)
			o[dhcpv4.OptionRebindingTimeValue.Code()] = u32opt4(uint32(uint64(secs) * 7 / 8))
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
	if h := cl.host; h != nil && h.label != "" && yiaddr == h.ip && cl.req.IsOptionRequested(dhcpv4.OptionHostName) {
		o[dhcpv4.OptionHostName.Code()] = []byte(firstLabel4(h.name))
	}
	return r
}

// nak builds a DHCPNAK carrying msg (option 56).
func (h *Handler4) nak(cl *client4, msg string) *dhcpv4.DHCPv4 {
	r := h.newReply4(cl, dhcpv4.MessageTypeNak)
	r.Options[dhcpv4.OptionMessage.Code()] = []byte(msg)
	return r
}
