package dhcpd

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle4: parsing and handling arbitrary bytes never panics, and any
// reply marshals and has a destination.
func FuzzHandle4(f *testing.F) {
	disc := discover4(macA_4, hostname4("fuzz"), clientID4(1, 0x52, 0x54, 0, 0, 0, 0x0a))
	f.Add(disc.ToBytes())
	offer := newMsg4(macA_4, dhcpv4.MessageTypeOffer, dhcpv4.WithYourIP(ip4s("192.168.122.5")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4s("192.168.122.1"))))
	f.Add(select4(macA_4, offer).ToBytes())
	f.Add(initReboot4(macB_4, "192.168.122.10").ToBytes())
	f.Add(renew4(macA_4, "192.168.122.5", true).ToBytes())
	f.Add(release4(macA_4, "192.168.122.5").ToBytes())
	f.Add(decline4(macA_4, "192.168.122.5").ToBytes())
	f.Add(newMsg4(macA_4, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ip4s("192.168.122.9"))).ToBytes())
	f.Add(discover4("00:16:3e:77:e2:ed", leaseOpt4(0xffffffff)).ToBytes())
	f.Add([]byte{})
	f.Add(make([]byte, 240))
	f.Add(disc.ToBytes()[:241])

	xml := natNet4(`<range start='192.168.122.2' end='192.168.122.6'><lease expiry='0'/></range>
<host mac='00:16:3e:77:e2:ed' name='a' ip='192.168.122.10'/><host name='fuzz' ip='192.168.122.11'/>`)
	n := netXML4(f, xml)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := NewHandler4(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := t04
		// Twice, so the second pass meets the state the first one left.
		for i := 0; i < 2; i++ {
			req, err := dhcpv4.FromBytes(b)
			if err != nil {
				return
			}
			resp, commit, release, err := h.Handle(req, now)
			if err != nil && (resp != nil || commit != nil || release != nil) {
				t.Fatalf("error %v with a decision", err)
			}
			if release != nil {
				h.Settle(*release)
			}
			if commit != nil && (!commit.IP.Is4() || commit.Network != "t4") {
				t.Fatalf("bad commit %+v", commit)
			}
			if resp != nil {
				out := resp.ToBytes()
				if _, err := dhcpv4.FromBytes(out); err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
				mac, ip := dest4(req, resp)
				if len(mac) != 6 || !ip.Is4() {
					t.Fatalf("destination %v %v", mac, ip)
				}
				frame4(mac, mac4(macD_4), netipMust4("192.168.122.1"), ip, serverPort4, clientPort4, out)
			}
			for _, a := range h.Expire(now) {
				h.Settle(a)
			}
			now = now.Add(time.Hour)
		}
	})
}
