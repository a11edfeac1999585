package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel's ICMP codes behind nft's plain "reject" (port unreachable).
const (
	icmpPortUnreach   = 3 // ICMP_PORT_UNREACH
	icmpv6PortUnreach = 4 // ICMPV6_PORT_UNREACH
)

// ifnamsiz is the size of the kernel's interface name buffers; nft compares
// iifname/oifname against the zero-padded full buffer.
const ifnamsiz = 16

// Ifindexes resolves the interfaces matched by index (iif/oif). vnetd only
// ever matches its own bridge that way; other interfaces go by name.
type Ifindexes map[string]int

// Exprs translates a rule into google/nftables expressions, in the same
// bytecode nft itself generates for the rule's text (checked against
// `nft --debug=netlink` by the kernel tests), so `nft list ruleset` shows
// exactly the rules of Plan.NFT.
func (r Rule) Exprs(f Family, idx Ifindexes) ([]expr.Any, error) {
	var out []expr.Any
	for _, m := range r.Match {
		e, err := m.exprs(f, idx)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	e, err := r.Action.exprs(f)
	if err != nil {
		return nil, err
	}
	return append(out, e...), nil
}

func (m Match) exprs(f Family, idx Ifindexes) ([]expr.Any, error) {
	switch m.Kind {
	case MatchIIF, MatchOIF:
		i, ok := idx[m.Iface]
		if !ok || i <= 0 {
			return nil, fmt.Errorf("no interface index for %q", m.Iface)
		}
		key := expr.MetaKeyIIF
		if m.Kind == MatchOIF {
			key = expr.MetaKeyOIF
		}
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(i))},
		}, nil
	case MatchIIFName, MatchOIFName:
		if len(m.Iface) >= ifnamsiz {
			return nil, fmt.Errorf("interface name %q is too long", m.Iface)
		}
		key := expr.MetaKeyIIFNAME
		if m.Kind == MatchOIFName {
			key = expr.MetaKeyOIFNAME
		}
		name := make([]byte, ifnamsiz)
		copy(name, m.Iface)
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		}, nil
	case MatchL4Proto:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(m.Proto)}},
		}, nil
	case MatchSaddr, MatchDaddr:
		return m.addrExprs(f)
	case MatchRelatedEstablished:
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{
				SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitRELATED | expr.CtStateBitESTABLISHED),
				Xor:  make([]byte, 4),
			},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, nil
	}
	return nil, fmt.Errorf("unknown match kind %d", m.Kind)
}

// addrExprs compares an address field with a prefix the way nft does: a prefix
// on a byte boundary loads and compares just its bytes; any other loads the
// whole address and masks it.
func (m Match) addrExprs(f Family) ([]expr.Any, error) {
	p := m.Prefix
	if !p.IsValid() || familyOf(p) != f {
		return nil, fmt.Errorf("prefix %v does not belong in an %s table", p, f)
	}
	var offset uint32
	switch {
	case f == IPv4 && m.Kind == MatchSaddr:
		offset = 12
	case f == IPv4:
		offset = 16
	case m.Kind == MatchSaddr:
		offset = 8
	default:
		offset = 24
	}
	addr := p.Masked().Addr().AsSlice()
	op := expr.CmpOpEq
	if m.Not {
		op = expr.CmpOpNeq
	}
	bits := p.Bits()
	if bits > 0 && bits%8 == 0 {
		n := uint32(bits / 8)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
			&expr.Cmp{Op: op, Register: 1, Data: addr[:n]},
		}, nil
	}
	mask := make([]byte, len(addr))
	for i := 0; i < bits; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: op, Register: 1, Data: addr},
	}, nil
}

func (a Action) exprs(f Family) ([]expr.Any, error) {
	switch a.Verdict {
	case Accept:
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}, nil
	case Return:
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}, nil
	case Jump:
		if a.Chain == "" {
			return nil, errors.New("jump without a chain")
		}
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: a.Chain}}, nil
	case Reject:
		code := uint8(icmpPortUnreach)
		if f == IPv6 {
			code = icmpv6PortUnreach
		}
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}, nil
	case Masquerade:
		if !a.hasPorts() {
			return []expr.Any{&expr.Masq{}}, nil
		}
		return []expr.Any{
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(a.PortStart)},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(a.PortEnd)},
			// marshalExpr adds the NF_NAT_RANGE_PROTO_SPECIFIED flag that
			// google/nftables leaves out (see marshalMasq).
			&expr.Masq{ToPorts: true, RegProtoMin: 1, RegProtoMax: 2},
		}, nil
	case SNAT:
		if !a.AddrStart.IsValid() || addrFamily(a.AddrStart) != f ||
			(a.AddrEnd.IsValid() && a.AddrEnd.Is4() != a.AddrStart.Is4()) {
			return nil, fmt.Errorf("SNAT range %v-%v does not belong in an %s table", a.AddrStart, a.AddrEnd, f)
		}
		nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4}
		if f == IPv6 {
			nat.Family = unix.NFPROTO_IPV6
		}
		var out []expr.Any
		reg := uint32(1)
		load := func(data []byte) uint32 {
			out = append(out, &expr.Immediate{Register: reg, Data: data})
			reg++
			return reg - 1
		}
		// Both registers always, as the kernel reports them (a single
		// address is min = max), so that Check compares like with like.
		nat.RegAddrMin = load(a.AddrStart.AsSlice())
		nat.RegAddrMax = nat.RegAddrMin
		if a.AddrEnd.IsValid() {
			nat.RegAddrMax = load(a.AddrEnd.AsSlice())
		}
		if a.hasPorts() {
			nat.RegProtoMin = load(binaryutil.BigEndian.PutUint16(a.PortStart))
			nat.RegProtoMax = load(binaryutil.BigEndian.PutUint16(a.PortEnd))
			nat.Specified = true
		}
		return append(out, nat), nil
	}
	return nil, fmt.Errorf("unknown verdict %d", a.Verdict)
}

func (a Action) hasPorts() bool { return a.PortStart != 0 || a.PortEnd != 0 }

// marshalExpr is expr.Marshal, except for a masquerade with a port range.
//
// The kernel's masq expression only applies its port registers when the rule
// also carries the NF_NAT_RANGE_PROTO_SPECIFIED flag: without it, a guest's
// source port is kept whenever it is free, so a guest could still reach an NFS
// server from a port below 1024, which is what libvirt's `masquerade to
// :1024-65535` is there to prevent. nft sends that flag (`masq proto_min reg 1
// proto_max reg 2 flags 0x2`), but google/nftables v0.3.0's expr.Masq never
// writes flags when ToPorts is set, and expr.Any cannot be implemented outside
// its package. So that one expression is encoded here, and the batch that
// carries it is built by this package instead of nftables.Conn.
func marshalExpr(f Family, e expr.Any) ([]byte, error) {
	if m, ok := e.(*expr.Masq); ok && m.ToPorts {
		return marshalMasq(m)
	}
	return expr.Marshal(byte(nfproto(f)), e)
}

func marshalMasq(m *expr.Masq) ([]byte, error) {
	flags := uint32(unix.NF_NAT_RANGE_PROTO_SPECIFIED)
	if m.Random {
		flags |= unix.NF_NAT_RANGE_PROTO_RANDOM
	}
	if m.FullyRandom {
		flags |= unix.NF_NAT_RANGE_PROTO_RANDOM_FULLY
	}
	if m.Persistent {
		flags |= unix.NF_NAT_RANGE_PERSISTENT
	}
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_MASQ_FLAGS, Data: binary.BigEndian.AppendUint32(nil, flags)},
		{Type: unix.NFTA_MASQ_REG_PROTO_MIN, Data: binary.BigEndian.AppendUint32(nil, m.RegProtoMin)},
	}
	if m.RegProtoMax != 0 {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_MASQ_REG_PROTO_MAX, Data: binary.BigEndian.AppendUint32(nil, m.RegProtoMax)})
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	return netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_EXPR_NAME, Data: []byte("masq\x00")},
		{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: data},
	})
}

func nfproto(f Family) uint8 {
	if f == IPv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}
