package firewall

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// masqFlags decodes an encoded masq expression's NFTA_MASQ_FLAGS (ok false:
// none).
func masqFlags(t *testing.T, b []byte) (flags uint32, ok bool) {
	t.Helper()
	outer, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range outer {
		if a.Type&^unix.NLA_F_NESTED != unix.NFTA_EXPR_DATA {
			continue
		}
		inner, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, ia := range inner {
			if ia.Type == unix.NFTA_MASQ_FLAGS {
				return binary.BigEndian.Uint32(ia.Data), true
			}
		}
	}
	return 0, false
}

// TestMasqPortsFlag: a masquerade with a port range must carry
// NF_NAT_RANGE_PROTO_SPECIFIED, or the kernel ignores the range.
func TestMasqPortsFlag(t *testing.T) {
	exprs, err := Action{Verdict: Masquerade, PortStart: 1024, PortEnd: 65535}.exprs(IPv4)
	if err != nil {
		t.Fatal(err)
	}
	masq := exprs[len(exprs)-1]
	b, err := marshalExpr(IPv4, masq)
	if err != nil {
		t.Fatal(err)
	}
	if flags, ok := masqFlags(t, b); !ok || flags != unix.NF_NAT_RANGE_PROTO_SPECIFIED {
		t.Errorf("masq flags %#x (present %v), want NF_NAT_RANGE_PROTO_SPECIFIED", flags, ok)
	}
	// Our encoding reads back as the expression we planned, which is what
	// Check compares.
	var back expr.Masq
	inner, _ := netlink.UnmarshalAttributes(b)
	if err := expr.Unmarshal(unix.NFPROTO_IPV4, inner[1].Data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, masq) {
		t.Errorf("decoded %+v, want %+v", back, masq)
	}
	// A plain masquerade is google/nftables' own encoding.
	plain, err := marshalExpr(IPv4, &expr.Masq{})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := expr.Marshal(unix.NFPROTO_IPV4, &expr.Masq{}); !reflect.DeepEqual(plain, want) {
		t.Errorf("plain masq encoded as %x, want %x", plain, want)
	}
}

// TestUpstreamMasqLacksFlag documents why marshalExpr exists: google/nftables
// v0.3.0 encodes a masquerade with ports without any flags. When this fails,
// upstream has fixed it and the local encoder can go.
func TestUpstreamMasqLacksFlag(t *testing.T) {
	b, err := expr.Marshal(unix.NFPROTO_IPV4, &expr.Masq{ToPorts: true, RegProtoMin: 1, RegProtoMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	if flags, ok := masqFlags(t, b); ok {
		t.Errorf("google/nftables now sends masq flags %#x: marshalMasq may no longer be needed", flags)
	}
}

// TestAddrExprs: prefixes are matched the way nft compiles them.
func TestAddrExprs(t *testing.T) {
	payload := func(off, n uint32) *expr.Payload {
		return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
	}
	for _, tc := range []struct {
		m    Match
		f    Family
		want []expr.Any
	}{
		{Match{Kind: MatchSaddr, Prefix: netip.MustParsePrefix("192.168.122.0/24")}, IPv4, []expr.Any{
			payload(12, 3), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{192, 168, 122}},
		}},
		{Match{Kind: MatchDaddr, Not: true, Prefix: netip.MustParsePrefix("10.20.0.0/20")}, IPv4, []expr.Any{
			payload(16, 4),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 240, 0}, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{10, 20, 0, 0}},
		}},
		{Match{Kind: MatchDaddr, Prefix: netip.MustParsePrefix("255.255.255.255/32")}, IPv4, []expr.Any{
			payload(16, 4), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{255, 255, 255, 255}},
		}},
		{Match{Kind: MatchSaddr, Prefix: netip.MustParsePrefix("0.0.0.0/0")}, IPv4, []expr.Any{
			payload(12, 4),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: make([]byte, 4), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
		}},
		{Match{Kind: MatchSaddr, Prefix: netip.MustParsePrefix("2001:db8:ca2:2::/64")}, IPv6, []expr.Any{
			payload(8, 8), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x20, 0x01, 0x0d, 0xb8, 0x0c, 0xa2, 0, 2}},
		}},
		{Match{Kind: MatchDaddr, Prefix: netip.MustParsePrefix("ff02::/16")}, IPv6, []expr.Any{
			payload(24, 2), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0xff, 0x02}},
		}},
		{Match{Kind: MatchDaddr, Prefix: netip.MustParsePrefix("fd00:60::/60")}, IPv6, []expr.Any{
			payload(24, 16),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16,
				Mask: []byte{255, 255, 255, 255, 255, 255, 255, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0}, Xor: make([]byte, 16)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: netip.MustParseAddr("fd00:60::").AsSlice()},
		}},
	} {
		got, err := tc.m.exprs(tc.f, nil)
		if err != nil {
			t.Errorf("%v: %v", tc.m.Prefix, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v:\ngot  %#v\nwant %#v", tc.m.Prefix, got, tc.want)
		}
	}
	if _, err := (Match{Kind: MatchSaddr, Prefix: netip.MustParsePrefix("fd00::/8")}).exprs(IPv4, nil); err == nil {
		t.Error("IPv6 prefix in an ip table: no error")
	}
}

func TestIfaceExprs(t *testing.T) {
	if _, err := (Match{Kind: MatchIIF, Iface: "virbr0"}).exprs(IPv4, nil); err == nil {
		t.Error("iif without an index: no error")
	}
	got, err := (Match{Kind: MatchOIFName, Iface: "eth0"}).exprs(IPv4, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("eth0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
}

// TestAllRulesEncode: every rule of the golden and corpus-like plans has an
// encoding (the kernel tests check what it means).
func TestAllRulesEncode(t *testing.T) {
	p, err := Build(parseNetwork(t, natXML))
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range p.Tables {
		for _, r := range tb.Rules {
			exprs, err := r.Exprs(tb.Family, Ifindexes{"virbr0": 7})
			if err != nil {
				t.Errorf("%s: %v", r, err)
				continue
			}
			if _, err := ruleMsg(tb.Family, tb.Name, r.Chain, exprs); err != nil {
				t.Errorf("%s: %v", r, err)
			}
		}
	}
}
