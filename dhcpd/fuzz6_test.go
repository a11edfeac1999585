package dhcpd

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// FuzzHandle6 feeds arbitrary datagrams through the decoder and the handler
// (twice, an hour apart, on a handler that already has a lease): nothing
// may panic, and every answer must encode and decode again. The server's
// way (msg6.decode, handle) must decide what Handle does and encode its
// answer as the dhcpv6 codec would.
func FuzzHandle6(f *testing.F) {
	n := parseNet6(f, net6XML, nil)
	e := &env6{t: f, now: t06}
	sid, _ := dhcpv6.DUIDFromBytes(serverID6)
	seeds := []*dhcpv6.Message{
		e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()),
		e.msg(tcl6{duid: duidB6, iaid: 1, rapid: true, fqdn: "guest.mynet"}, dhcpv6.MessageTypeSolicit, cB.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeRequest, cA.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeRenew, cA.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeRebind, cA.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeConfirm, cA.ia(pfx6+"1:33", "2001:db8::1")),
		e.msg(cA, dhcpv6.MessageTypeRelease, cA.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeDecline, cA.ia(pfx6+"1:33")),
		e.msg(cA, dhcpv6.MessageTypeInformationRequest),
		e.msg(cBob, dhcpv6.MessageTypeSolicit, cBob.ia(), &dhcpv6.OptIAPD{IaId: [4]byte{1}}, &dhcpv6.OptIATA{IaId: [4]byte{2}}),
		e.msg(cPaul, dhcpv6.MessageTypeRequest, cPaul.ia(), tcl6{iaid: 9}.ia()),
	}
	for _, m := range seeds {
		f.Add(m.ToBytes())
	}
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var hs [2]*Handler6 // Handle's, the server's
		for i := range hs {
			h, err := NewHandler6(n, serverID6)
			if err != nil {
				t.Fatal(err)
			}
			// Some state for Renew/Release/Decline to find.
			req := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeRequest}
			req.AddOption(dhcpv6.OptClientID(duidA6))
			req.AddOption(dhcpv6.OptServerID(sid))
			req.AddOption(cA.ia(pfx6 + "1:33"))
			if _, c, _, err := h.Handle(req, peerA6, t06); err != nil || len(c) != 1 {
				t.Fatalf("setup request: %v %v", c, err)
			}
			hs[i] = h
		}
		h := hs[0]
		msg, err := dhcpv6.MessageFromBytes(data)
		if err != nil {
			return
		}
		var m msg6
		if err := m.decode(data); err != nil {
			t.Fatalf("decode rejects what the codec reads: %v", err)
		}
		for i := range 2 {
			now := t06.Add(time.Duration(i) * time.Hour)
			resp, commits, releases, err := h.Handle(msg, peerA6, now)
			a, aerr := hs[1].handle(&m, peerA6, now, nil)
			if fmt.Sprint(err) != fmt.Sprint(aerr) || !reflect.DeepEqual(commits, a.commits) || !slices.Equal(releases, a.releases) {
				t.Fatalf("Handle: %v %v %v; handle: %v %v %v", err, commits, releases, aerr, a.commits, a.releases)
			}
			if err != nil {
				if resp != nil || commits != nil {
					t.Fatalf("error %v with an answer", err)
				}
				continue
			}
			if resp == nil {
				if a.resp != nil {
					t.Fatalf("handle answers %x, Handle does not", a.resp)
				}
				continue
			}
			if _, err := dhcpv6.MessageFromBytes(resp.ToBytes()); err != nil {
				t.Fatalf("answer %s does not decode: %v", resp.Summary(), err)
			}
			if !bytes.Equal(a.resp, resp.ToBytes()) || a.typ != resp.MessageType || a.noAddrs != noAddrs6(resp) {
				t.Fatalf("handle answers %x (%s, NoAddrsAvail %v), the codec encodes %s as %x", a.resp, a.typ, a.noAddrs, resp.Summary(), resp.ToBytes())
			}
			for _, l := range commits {
				if !l.IP.Is6() || l.DUID == "" || l.Network != "default" {
					t.Fatalf("bad commit %+v", l)
				}
			}
			for _, h := range hs {
				h.Sweep(now.Add(2 * time.Hour))
			}
		}
	})
}
