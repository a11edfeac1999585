package dhcpd

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// noAddrs6 reports whether an answer says NoAddrsAvail, at the top or in
// an IA_NA, as answer6.noAddrs must.
func noAddrs6(m *dhcpv6.Message) bool {
	if st := m.Options.Status(); st != nil && st.StatusCode == iana.StatusNoAddrsAvail {
		return true
	}
	for _, ia := range m.Options.IANA() {
		if st := ia.Options.Status(); st != nil && st.StatusCode == iana.StatusNoAddrsAvail {
			return true
		}
	}
	return false
}

// parseSeeds6 are datagrams for FuzzParse6: what clients send, and the
// options parse checks itself, valid and not.
func parseSeeds6(tb testing.TB) [][]byte {
	e := &env6{t: tb, now: t06}
	sid, _ := dhcpv6.DUIDFromBytes(serverID6)
	withIA := cA.ia(pfx6+"1:33", pfx6+"1:34")
	withIA.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess, StatusMessage: "ok"})
	nested := cA.ia(pfx6 + "1:35")
	nested.Options.Add(tcl6{iaid: 7}.ia(pfx6 + "1:36"))
	addrWithOpts := &dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(pfx6 + "1:37")}
	addrWithOpts.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
	ia2 := tcl6{iaid: 2}.ia()
	ia2.Options.Add(addrWithOpts)
	msgs := []*dhcpv6.Message{
		e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()),
		e.msg(tcl6{duid: duidB6, iaid: 1, rapid: true}, dhcpv6.MessageTypeSolicit, cB.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeRequest, withIA, dhcpv6.OptServerID(sid)),
		e.msg(cA, dhcpv6.MessageTypeRenew, nested, ia2),
		e.msg(cA, dhcpv6.MessageTypeConfirm, cA.ia(pfx6+"1:33"), &dhcpv6.OptIATA{IaId: [4]byte{2}}),
		e.msg(cBob, dhcpv6.MessageTypeSolicit, cBob.ia(), &dhcpv6.OptIAPD{IaId: [4]byte{1}}, &dhcpv6.OptIATA{IaId: [4]byte{2}}),
		e.msg(tcl6{duid: &dhcpv6.DUIDUUID{UUID: [16]byte{1}}, iaid: 1}, dhcpv6.MessageTypeSolicit, &dhcpv6.OptionGeneric{OptionCode: 999, OptionData: []byte{1, 2}}),
		e.msg(tcl6{duid: &dhcpv6.DUIDEN{EnterpriseNumber: 1, EnterpriseIdentifier: []byte{3}}, iaid: 1}, dhcpv6.MessageTypeInformationRequest),
		e.msg(tcl6{duid: &dhcpv6.DUIDOpaque{Type: 9, Data: []byte{3}}, iaid: 1, fqdn: "guest.mynet"}, dhcpv6.MessageTypeSolicit),
	}
	var seeds [][]byte
	for _, m := range msgs {
		seeds = append(seeds, m.ToBytes())
	}
	opt := func(code uint16, data ...byte) []byte {
		return append([]byte{1, 0, 0, 1, byte(code >> 8), byte(code), 0, byte(len(data))}, data...)
	}
	seeds = append(seeds,
		opt(1, 0, 1, 0, 1, 0, 0, 0), // a DUID-LLT one byte short
		opt(1, 0, 3, 0),             // a DUID-LL one byte short
		opt(2, 0, 4, 1, 2, 3),       // a DUID-UUID not of 16 bytes
		opt(6, 0, 23, 0),            // an odd Option Request
		opt(8, 0),                   // Elapsed Time of 1 byte
		opt(13, 0),                  // Status Code of 1 byte
		opt(3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0), // an IA Address of 0 bytes in an IA_NA
		opt(25, 0, 0, 0, 1), // a short IA_PD
		opt(14, 1, 2, 3),    // Rapid Commit with data
		append(opt(8, 0, 0), 0),
		[]byte{12, 0, 0, 0},
		[]byte{1, 0, 0},
	)
	return seeds
}

// FuzzParse6 holds msg6.parse to dhcpv6.MessageFromBytes: it accepts what
// the codec accepts and reads the same message from it, rejects what the
// codec rejects, and leaves to the codec what it does not check itself.
func FuzzParse6(f *testing.F) {
	for _, s := range parseSeeds6(f) {
		f.Add(s)
	}
	var m, want msg6
	f.Fuzz(func(t *testing.T, data []byte) {
		err := m.parse(data)
		msg, cerr := dhcpv6.MessageFromBytes(data)
		switch {
		case err == errSlow6:
			return
		case err != nil:
			if cerr == nil {
				t.Fatalf("parse rejects %x (%v), the codec reads %s", data, err, msg.Summary())
			}
			return
		case cerr != nil:
			t.Fatalf("parse accepts %x, the codec does not: %v", data, cerr)
		}
		want.fromMessage(msg)
		if d := diffMsg6(&m, &want); d != "" {
			t.Fatalf("parse of %x: %s", data, d)
		}
	})
}

// diffMsg6 says how two decoded messages differ, "" if they do not.
func diffMsg6(got, want *msg6) string {
	ias := func(m *msg6, l []ia6) [][]netip.Addr {
		var out [][]netip.Addr
		for _, ia := range l {
			out = append(out, append([]netip.Addr{netip.AddrFrom4(ia.id)}, m.iaAddrs(ia)...))
		}
		return out
	}
	eq := func(a, b [][]netip.Addr) bool { return slices.EqualFunc(a, b, slices.Equal) }
	switch {
	case got.typ != want.typ || got.xid != want.xid:
		return "type or transaction ID"
	case !bytes.Equal(got.cid, want.cid) || (got.cid == nil) != (want.cid == nil):
		return "client ID"
	case !bytes.Equal(got.sid, want.sid) || (got.sid == nil) != (want.sid == nil):
		return "server ID"
	case !eq(ias(got, got.ianas), ias(want, want.ianas)):
		return "IA_NAs"
	case !eq(ias(got, got.iatas), ias(want, want.iatas)):
		return "IA_TAs"
	case !slices.Equal(got.iapds, want.iapds):
		return "IA_PDs"
	case got.rapid != want.rapid:
		return "rapid commit"
	case got.hasFQDN != want.hasFQDN || got.fqdn != want.fqdn:
		return "FQDN"
	}
	return ""
}

// TestCodecKnows6 checks codecKnows6 against the codec: the options it
// decodes into a type of its own are those it may reject.
func TestCodecKnows6(t *testing.T) {
	for code := range 1 << 16 {
		c := dhcpv6.OptionCode(code)
		opt, _ := dhcpv6.ParseOption(c, nil)
		if _, generic := opt.(*dhcpv6.OptionGeneric); generic == codecKnows6(c) {
			t.Errorf("option %d (%s): codecKnows6 %v, the codec decodes it as %T", code, c, codecKnows6(c), opt)
		}
	}
}

// TestParse6Fallback: messages with options parse leaves to the codec are
// decoded all the same.
func TestParse6Fallback(t *testing.T) {
	e := &env6{t: t, now: t06}
	b := e.msg(tcl6{duid: duidA6, iaid: 1, fqdn: "guest.mynet"}, dhcpv6.MessageTypeSolicit, cA.ia(pfx6+"1:33")).ToBytes()
	var m msg6
	if err := m.parse(b); err != errSlow6 {
		t.Fatalf("parse of a Solicit with an FQDN: %v, want errSlow6", err)
	}
	if err := m.decode(b); err != nil || !m.hasFQDN || m.fqdn != "guest.mynet" || len(m.ianas) != 1 || len(m.iaAddrs(m.ianas[0])) != 1 {
		t.Fatalf("decode: %v %+v", err, m)
	}
	if err := m.decode(b[:len(b)-1]); err == nil {
		t.Fatal("decode accepted a cut Solicit")
	}
}

// TestHandle6Allocs: deciding a Request of a bound client allocates only
// what outlives it (its lease and the IA key), however many options it has.
func TestHandle6Allocs(t *testing.T) {
	e := &env6{t: t, now: t06}
	h, err := NewHandler6(parseNet6(t, net6XML, nil), serverID6)
	if err != nil {
		t.Fatal(err)
	}
	sol := e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()).ToBytes()
	var m msg6
	buf := make([]byte, 0, 1024)
	if err := m.parse(sol); err != nil {
		t.Fatal(err)
	}
	adv, err := h.handle(&m, peerA6, t06, buf)
	if err != nil || adv.resp == nil {
		t.Fatal(err)
	}
	resp, _ := dhcpv6.MessageFromBytes(adv.resp)
	req := e.msg(cA, dhcpv6.MessageTypeRequest, resp.Options.OneIANA()).ToBytes()
	if n := testing.AllocsPerRun(100, func() {
		if err := m.parse(req); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("parse: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if a, err := h.handle(&m, peerA6, t06, buf); err != nil || len(a.commits) != 1 {
			t.Fatal(err)
		}
	}); n > 2 {
		t.Errorf("handle of a Request: %v allocations, want at most 2", n)
	}
}

// TestEncode6 checks the encoder's pieces against the codec.
func TestEncode6(t *testing.T) {
	ip := netip.MustParseAddr(pfx6 + "1:33")
	ia := &dhcpv6.OptIANA{IaId: [4]byte{1, 2, 3, 4}, T1: 1800 * time.Second, T2: infinity6}
	ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(ip.AsSlice()), PreferredLifetime: 3600 * time.Second, ValidLifetime: infinity6})
	ia.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoBinding, StatusMessage: "no binding"})
	var want dhcpv6.Message
	want.AddOption(ia)
	want.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
	want.AddOption(dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: []string{"example.com"}}))

	b, at := openOpt6(nil, dhcpv6.OptionIANA)
	b = append(b, 1, 2, 3, 4)
	b = put32(put32(b, secs6(1800*time.Second)), secs6(infinity6))
	b = putIAAddr6(b, ip, 3600*time.Second, infinity6)
	b = putStatus6(b, uint16(iana.StatusNoBinding), "no binding")
	closeOpt6(b, at)
	b = putOpt6(b, dhcpv6.OptionRapidCommit, nil)
	b = append(b, configOptions6(nil, "example.com")...)
	if got := want.Options.ToBytes(); !bytes.Equal(b, got) {
		t.Errorf("encoded\n%x\nthe codec\n%x", b, got)
	}
}
