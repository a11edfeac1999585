package dhcpd

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
)

// Hostile packets (issue 10): each is dropped and counted, or answered as
// the valid request it still is, and the server goes on serving.

// serve4Counted serves b and reports whether it was answered; a packet
// that is not answered must be counted as dropped.
func serve4Counted(t *testing.T, s *Server4, out *sent4, b []byte) bool {
	t.Helper()
	out.mu.Lock()
	before := len(out.frames)
	out.mu.Unlock()
	dropped := s.Stats().Dropped
	s.serveSync(context.Background(), b)
	out.mu.Lock()
	answered := len(out.frames) > before
	out.mu.Unlock()
	if got := s.Stats().Dropped - dropped; answered && got != 0 || !answered && got != 1 {
		t.Errorf("%d bytes: answered %v, dropped counted %d times", len(b), answered, got)
	}
	return answered
}

func TestTruncatedPackets4(t *testing.T) {
	s, out := newTestServer4(t, natNet4(defaultRange4), newMemStore4(), func() time.Time { return t04 })
	full := discover4(macA_4, hostname4("guest"), clientID4(1, 0x52, 0x54, 0, 0, 0, 0x0a),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer)).ToBytes()
	// 236 bytes of BOOTP, the magic cookie and option 53: anything shorter
	// is not a DHCP request. Longer prefixes lose options at the end and
	// may still be a DISCOVER worth an OFFER.
	const minRequest = 236 + 4 + 3
	answered := 0
	for n := range len(full) {
		if serve4Counted(t, s, out, full[:n]) {
			answered++
			if n < minRequest {
				t.Errorf("a %d-byte prefix was answered", n)
			}
		}
	}
	if st := s.Stats(); st.Dropped != uint64(len(full)-answered) {
		t.Errorf("stats %+v after %d prefixes, %d answered", st, len(full), answered)
	}
	for _, r := range out.replies(t) {
		if typeOf4(r) != "OFFER" {
			t.Errorf("a prefix got %s", typeOf4(r))
		}
	}
	if !serve4Counted(t, s, out, full) {
		t.Fatal("the whole DISCOVER is not answered after its prefixes")
	}
}

func TestMalformedPackets4(t *testing.T) {
	good := discover4(macA_4).ToBytes()
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	// opts is a packet with good's BOOTP header and these options.
	opts := func(o ...byte) []byte { return append(bytes.Clone(good[:240]), o...) }
	for name, pkt := range map[string][]byte{
		"bad magic cookie":        edit(func(b []byte) []byte { b[236] = 0; return b }),
		"BOOTREPLY":               edit(func(b []byte) []byte { b[0] = 2; return b }),
		"opcode 7":                edit(func(b []byte) []byte { b[0] = 7; return b }),
		"hardware length 255":     edit(func(b []byte) []byte { b[2] = 255; return b }),
		"hardware length 0":       edit(func(b []byte) []byte { b[2] = 0; return b }),
		"option past the end":     opts(53, 1, 1, 12, 200, 'x'),
		"option length cut off":   opts(53, 1, 1, 12),
		"message type of 0 bytes": opts(53, 0, 255),
		"message type 0":          opts(53, 1, 0, 255),
		"message type 200":        opts(53, 1, 200, 255),
		"message type of 2 bytes": opts(53, 2, 1, 1, 255),
		"no message type":         opts(12, 1, 'x', 255),
		"overload into garbage": edit(func(b []byte) []byte {
			copy(b[44:], bytes.Repeat([]byte{12, 250}, 96)) // sname and file: options that never end
			return append(b[:240], 53, 1, 1, 52, 1, 3, 255)
		}),
		"only padding":          opts(bytes.Repeat([]byte{0}, 3000)...),
		"end at once":           opts(255, 53, 1, 1),
		"all ones":              bytes.Repeat([]byte{0xff}, 576),
		"all zeroes":            make([]byte, 576),
		"garbage after the end": opts(append([]byte{53, 1, 1, 255}, bytes.Repeat([]byte{0xee}, 3000)...)...),
		"header only":           good[:236],
		"cookie only":           good[:240],
		"garbage":               []byte("GET / HTTP/1.1\r\n\r\n"),
		"empty":                 {},
		"one byte":              {1},
		"relayed reply":         edit(func(b []byte) []byte { b[0], b[3] = 2, 1; return b }),
	} {
		t.Run(name, func(t *testing.T) {
			s, out := newTestServer4(t, natNet4(defaultRange4), newMemStore4(), func() time.Time { return t04 })
			if serve4Counted(t, s, out, pkt) {
				// Only a packet that is still a valid DISCOVER may be answered.
				req, err := dhcpv4.FromBytes(pkt)
				if err != nil || req.MessageType() != dhcpv4.MessageTypeDiscover {
					t.Errorf("answered: %v", err)
				}
			}
			if !serve4Counted(t, s, out, good) {
				t.Error("a good DISCOVER after it is not answered")
			}
		})
	}
}

// TestOptionFlood4: packets as big as the server reads, full of options.
func TestOptionFlood4(t *testing.T) {
	head := discover4(macA_4).ToBytes()[:240]
	flood := func(opts ...byte) []byte {
		b := append(bytes.Clone(head), 53, 1, byte(dhcpv4.MessageTypeDiscover))
		for len(b)+len(opts) < maxPacket4 {
			b = append(b, opts...)
		}
		return append(b, 255)
	}
	unknown := []byte{224, 255}
	unknown = append(unknown, bytes.Repeat([]byte{0xaa}, 255)...)
	prl := []byte{55, 254}
	for i := 1; i <= 254; i++ {
		prl = append(prl, byte(i))
	}
	for name, tc := range map[string]struct {
		pkt  []byte
		drop bool
	}{
		// RFC 3396: repeated options are concatenated into one long one.
		"host name of 4 kB": {pkt: flood(append([]byte{12, 255}, bytes.Repeat([]byte{'a'}, 255)...)...)},
		// Every reply would echo it (RFC 6842), far over 576 bytes.
		"client id of 4 kB":      {pkt: flood(append([]byte{61, 255}, bytes.Repeat([]byte{1}, 255)...)...), drop: true},
		"client id of 255 bytes": {pkt: append(append(bytes.Clone(head), 53, 1, 1, 61, 255), append(bytes.Repeat([]byte{1}, 255), 255)...)},
		"padding":                {pkt: flood(0)},
		"unknown options":        {pkt: flood(unknown...)},
		"every option asked for": {pkt: append(append(bytes.Clone(head), 53, 1, 1), append(prl, 255)...)},
	} {
		t.Run(name, func(t *testing.T) {
			pkt := tc.pkt
			store := newMemStore4()
			s, out := newTestServer4(t, natNet4(defaultRange4), store, func() time.Time { return t04 })
			if len(pkt) > maxPacket4 {
				t.Fatalf("test packet of %d bytes", len(pkt))
			}
			if answered := serve4Counted(t, s, out, pkt); answered == tc.drop {
				t.Fatalf("answered %v, want %v", answered, !tc.drop)
			}
			if tc.drop {
				return
			}
			offer := out.replies(t)[0]
			// Without option 57 a client accepts 576 bytes.
			if n := len(offer.ToBytes()); n > 576 {
				t.Errorf("OFFER of %d bytes", n)
			}
			// The REQUEST with the same options gets its lease, with a
			// host name no longer than a DNS label.
			disc, err := dhcpv4.FromBytes(pkt)
			if err != nil {
				t.Fatal(err)
			}
			req := select4(macA_4, offer)
			for code, v := range disc.Options {
				if code != dhcpv4.OptionDHCPMessageType.Code() {
					req.Options[code] = v
				}
			}
			if !serve4Counted(t, s, out, req.ToBytes()) {
				t.Fatal("REQUEST not answered")
			}
			if r := out.replies(t); typeOf4(r[len(r)-1]) != "ACK" {
				t.Fatalf("REQUEST got %s", typeOf4(r[len(r)-1]))
			}
			l, ok := store.get("t4", addr4(offer.YourIPAddr))
			if !ok || len(l.Hostname) > 63 {
				t.Errorf("lease %v: %+v", ok, l)
			}
		})
	}
}

// newTestServer6 is a DHCPv6 server that has not been started: serve6
// feeds it datagrams from the host's loopback address, and its answers go
// to ::1 on lo (where nobody listens).
// tune, if given, adjusts the configuration first (store, clock, log).
func newTestServer6(t *testing.T, tune ...func(*Config6)) *Server6 {
	t.Helper()
	n := parseNet6(t, net6XML, nil)
	cfg := Config6{Network: n, Bridge: "lo", Store: newMemStore4(), Now: func() time.Time { return t06 }}
	for _, f := range tune {
		f(&cfg)
	}
	s, err := New6(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.h, err = NewHandler6(n, serverID6); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s.conn = conn
	return s
}

// serve6 handles one datagram and completes its store writes.
func (s *Server6) serve6(data []byte) {
	s.serve(context.Background(), packet6{data: data, peer: netip.IPv6Loopback()})
	s.inflight.Wait()
	s.done.mu.Lock()
	q := s.done.q
	s.done.q = nil
	s.done.mu.Unlock()
	for i := range q {
		s.complete(&q[i])
	}
}

// answers6 is how many messages the server answered.
func (st Stats6) answers6() uint64 { return st.Advertises + st.Replies }

func TestTruncatedPackets6(t *testing.T) {
	s := newTestServer6(t)
	e := &env6{t: t, now: t06}
	full := e.msg(tcl6{duid: duidA6, iaid: 1, fqdn: "guest.mynet"}, dhcpv6.MessageTypeSolicit, cA.ia(pfx6+"1:33")).ToBytes()
	for n := range len(full) {
		before := s.Stats()
		s.serve6(full[:n])
		after := s.Stats()
		dropped := after.Malformed + after.Ignored - before.Malformed - before.Ignored
		answered := after.answers6() - before.answers6()
		if dropped+answered != 1 {
			t.Errorf("%d-byte prefix: dropped %d, answered %d", n, dropped, answered)
		}
	}
	before := s.Stats().Advertises
	s.serve6(full)
	if st := s.Stats(); st.Advertises != before+1 || st.Bound != 0 {
		t.Fatalf("the whole Solicit after its prefixes: %+v", st)
	}
}

func TestMalformedPackets6(t *testing.T) {
	e := &env6{t: t, now: t06}
	solicit := e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()).ToBytes()
	var manyIAs, manyPDs []dhcpv6.Option
	for i := range 1000 {
		manyIAs = append(manyIAs, tcl6{iaid: uint32(i)}.ia())
		manyPDs = append(manyPDs, &dhcpv6.OptIAPD{IaId: [4]byte{0, 0, byte(i >> 8), byte(i)}})
	}
	noSID := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeRequest, TransactionID: dhcpv6.TransactionID{1, 2, 3}}
	noSID.AddOption(dhcpv6.OptClientID(duidA6))
	noSID.AddOption(cA.ia())
	otherSID := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeRequest, TransactionID: dhcpv6.TransactionID{1, 2, 3}}
	otherSID.AddOption(dhcpv6.OptClientID(duidA6))
	otherSID.AddOption(dhcpv6.OptServerID(duidB6))
	otherSID.AddOption(cA.ia())
	withOption := func(code uint16, length int, data ...byte) []byte {
		return append(append(bytes.Clone(solicit), byte(code>>8), byte(code), byte(length>>8), byte(length)), data...)
	}
	for name, tc := range map[string]struct {
		pkt     []byte
		ignored bool
	}{
		"empty":                        {pkt: []byte{}},
		"type only":                    {pkt: []byte{1}},
		"option past the end":          {pkt: withOption(39, 0xffff, 1, 2, 3)},
		"option header cut off":        {pkt: append(bytes.Clone(solicit), 0, 3)},
		"client id of 0 bytes":         {pkt: append([]byte{1, 0, 0, 1}, 0, 1, 0, 0)},
		"IA_NA of 3 bytes":             {pkt: withOption(3, 3, 0, 0, 1)},
		"IA address past its IA":       {pkt: withOption(3, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 24)},
		"Solicit without client id":    {pkt: []byte{1, 0, 0, 1}},
		"Solicit with a server id":     {pkt: e.msg(cA, dhcpv6.MessageTypeSolicit, dhcpv6.OptServerID(duidB6)).ToBytes()},
		"Request without server id":    {pkt: noSID.ToBytes()},
		"a thousand IAs in a Request":  {pkt: e.msg(cA, dhcpv6.MessageTypeRequest, manyIAs...).ToBytes()},
		"a thousand IAs in a Solicit":  {pkt: e.msg(cA, dhcpv6.MessageTypeSolicit, manyIAs...).ToBytes()},
		"a thousand IA_PDs":            {pkt: e.msg(cA, dhcpv6.MessageTypeSolicit, manyPDs...).ToBytes()},
		"Relay-forward":                {pkt: append([]byte{12, 0}, make([]byte, 32)...), ignored: true},
		"Advertise from a server":      {pkt: append([]byte{2}, solicit[1:]...), ignored: true},
		"Request for another server":   {pkt: otherSID.ToBytes(), ignored: true},
		"unknown type 250":             {pkt: append([]byte{250}, solicit[1:]...), ignored: true},
		"Information-request with IAs": {pkt: e.msg(cA, dhcpv6.MessageTypeInformationRequest, cA.ia()).ToBytes()},
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestServer6(t)
			s.serve6(tc.pkt)
			st := s.Stats()
			want := Stats6{Malformed: 1}
			if tc.ignored {
				want = Stats6{Ignored: 1}
			}
			if st.Malformed != want.Malformed || st.Ignored != want.Ignored || st.answers6() != 0 || st.Commits != 0 || st.Bound != 0 {
				t.Errorf("stats %+v", st)
			}
			// Nothing was taken from the pool: a client still gets an address.
			s.serve6(e.msg(cB, dhcpv6.MessageTypeSolicit, &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit}, cB.ia()).ToBytes())
			if st := s.Stats(); st.Replies != 1 || st.Commits != 1 || st.NoAddrsAvail != 0 {
				t.Errorf("a good Solicit after it: %+v", st)
			}
		})
	}
}
