package dhcpd

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// msg6 is a client message as Handler6 reads it: the few things it looks
// at, decoded without allocating (the DUIDs alias the datagram) and reused
// from one message to the next. The dhcpv6 codec made a hundred objects of
// a Solicit and its Advertise, the largest cost of a DHCPv6 exchange.
type msg6 struct {
	typ dhcpv6.MessageType
	xid dhcpv6.TransactionID
	// cid and sid are the DUIDs of the first Client ID and Server ID
	// options; nil when absent.
	cid, sid []byte
	ianas    []ia6
	iatas    []ia6
	iapds    [][4]byte // IA_PD IAIDs
	rapid    bool      // a Rapid Commit option
	// fqdn is the first label of the FQDN option's name (option 39);
	// hasFQDN says there was one with a name.
	fqdn    string
	hasFQDN bool
	addrs   []netip.Addr // the IA addresses, ia6.lo:hi of them each
}

// ia6 is an IA_NA or IA_TA: its IAID and the addresses the client put in
// it (its IA Address options, m.addrs[lo:hi]).
type ia6 struct {
	id     [4]byte
	lo, hi int
}

func (m *msg6) reset() {
	*m = msg6{ianas: m.ianas[:0], iatas: m.iatas[:0], iapds: m.iapds[:0], addrs: m.addrs[:0]}
}

// iaAddrs are the addresses of an IA of m.
func (m *msg6) iaAddrs(ia ia6) []netip.Addr { return m.addrs[ia.lo:ia.hi] }

// numIAs is the number of IA_NA, IA_TA and IA_PD options.
func (m *msg6) numIAs() int { return len(m.ianas) + len(m.iatas) + len(m.iapds) }

// fromMessage reads a decoded message (Handle's, and the datagrams parse
// leaves to the dhcpv6 codec).
func (m *msg6) fromMessage(req *dhcpv6.Message) {
	m.reset()
	m.typ, m.xid = req.MessageType, req.TransactionID
	if d := req.Options.ClientID(); d != nil {
		m.cid = d.ToBytes()
	}
	if d := req.Options.ServerID(); d != nil {
		m.sid = d.ToBytes()
	}
	addrs := func(o dhcpv6.IdentityOptions) (int, int) {
		lo := len(m.addrs)
		for _, a := range o.Addresses() {
			if ip, ok := netip.AddrFromSlice(a.IPv6Addr); ok && ip.Is6() {
				m.addrs = append(m.addrs, ip.WithZone(""))
			}
		}
		return lo, len(m.addrs)
	}
	for _, ia := range req.Options.IANA() {
		lo, hi := addrs(ia.Options)
		m.ianas = append(m.ianas, ia6{id: ia.IaId, lo: lo, hi: hi})
	}
	for _, ta := range req.Options.IATA() {
		lo, hi := addrs(ta.Options)
		m.iatas = append(m.iatas, ia6{id: ta.IaId, lo: lo, hi: hi})
	}
	for _, pd := range req.Options.IAPD() {
		m.iapds = append(m.iapds, pd.IaId)
	}
	m.rapid = req.GetOneOption(dhcpv6.OptionRapidCommit) != nil
	if f := req.Options.FQDN(); f != nil && f.DomainName != nil && len(f.DomainName.Labels) > 0 {
		m.fqdn, m.hasFQDN = f.DomainName.Labels[0], true
	}
}

// Why parse gives up on a datagram.
var (
	// errSlow6: the datagram has an option whose checks only the dhcpv6
	// codec makes (an FQDN, a vendor class, ...): decode it with that.
	errSlow6 = errors.New("DHCPv6 option left to the dhcpv6 codec")
	// errBad6: dhcpv6.MessageFromBytes rejects the datagram too.
	errBad6 = errors.New("malformed DHCPv6 datagram")
)

// decode reads a datagram: with parse, else with the dhcpv6 codec. An
// error is a datagram the codec rejects.
func (m *msg6) decode(b []byte) error {
	err := m.parse(b)
	if err != errSlow6 {
		return err
	}
	msg, err := dhcpv6.MessageFromBytes(b)
	if err != nil {
		return err
	}
	m.fromMessage(msg)
	return nil
}

// parse decodes b as dhcpv6.MessageFromBytes would, accepting and
// rejecting exactly what it does (FuzzParse6 holds it to that), for the
// options clients send in the exchanges that matter for speed: Client and
// Server ID, IAs and their addresses, Elapsed Time, Option Request, Rapid
// Commit, and any option the codec keeps as opaque bytes. For another
// option the codec knows it returns errSlow6.
func (m *msg6) parse(b []byte) error {
	m.reset()
	if len(b) < 4 {
		return errBad6
	}
	m.typ = dhcpv6.MessageType(b[0])
	if m.typ == dhcpv6.MessageTypeRelayForward || m.typ == dhcpv6.MessageTypeRelayReply {
		return errBad6
	}
	copy(m.xid[:], b[1:4])
	return m.options(b[4:], inMessage6)
}

// Where an option list is: what parse keeps of an option depends on it.
const (
	inMessage6 = iota // the message's own options
	inIA6             // an IA_NA's or IA_TA's: its addresses are kept
	inOther6          // any other option's: only checked
)

// options walks a list of options found in where.
func (m *msg6) options(b []byte, where int) error {
	for len(b) >= 4 {
		code := dhcpv6.OptionCode(binary.BigEndian.Uint16(b))
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b)-4 {
			return errBad6
		}
		data := b[4 : 4+n]
		b = b[4+n:]
		if err := m.option(code, data, where); err != nil {
			return err
		}
	}
	if len(b) > 0 {
		return errBad6
	}
	return nil
}

func (m *msg6) option(code dhcpv6.OptionCode, data []byte, where int) error {
	top := where == inMessage6
	switch code {
	case dhcpv6.OptionClientID, dhcpv6.OptionServerID:
		if !validDUID6(data) {
			return errBad6
		}
		switch {
		case !top:
		case code == dhcpv6.OptionClientID && m.cid == nil:
			m.cid = data
		case code == dhcpv6.OptionServerID && m.sid == nil:
			m.sid = data
		}
	case dhcpv6.OptionIANA, dhcpv6.OptionIATA:
		hdr := 12 // IAID, T1, T2
		if code == dhcpv6.OptionIATA {
			hdr = 4 // IAID
		}
		if len(data) < hdr {
			return errBad6
		}
		ia := ia6{id: [4]byte(data[:4]), lo: len(m.addrs)}
		if err := m.options(data[hdr:], inIA6); err != nil {
			return err
		}
		ia.hi = len(m.addrs)
		switch {
		case !top:
			// An IA inside an option is valid for the codec and of
			// no use: its addresses are not the outer IA's.
			m.addrs = m.addrs[:ia.lo]
		case code == dhcpv6.OptionIANA:
			m.ianas = append(m.ianas, ia)
		default:
			m.iatas = append(m.iatas, ia)
		}
	case dhcpv6.OptionIAPD, dhcpv6.OptionIAAddr:
		hdr := 12 // IAID, T1, T2
		if code == dhcpv6.OptionIAAddr {
			hdr = 24 // address, preferred and valid lifetimes
		}
		if len(data) < hdr {
			return errBad6
		}
		// Their options are checked, not kept.
		lo := len(m.addrs)
		if err := m.options(data[hdr:], inOther6); err != nil {
			return err
		}
		m.addrs = m.addrs[:lo]
		switch {
		case code == dhcpv6.OptionIAAddr && where == inIA6:
			m.addrs = append(m.addrs, netip.AddrFrom16([16]byte(data[:16])))
		case code == dhcpv6.OptionIAPD && top:
			m.iapds = append(m.iapds, [4]byte(data[:4]))
		}
	case dhcpv6.OptionORO:
		if len(data)%2 != 0 {
			return errBad6
		}
	case dhcpv6.OptionElapsedTime:
		if len(data) != 2 {
			return errBad6
		}
	case dhcpv6.OptionStatusCode:
		if len(data) < 2 {
			return errBad6
		}
	case dhcpv6.OptionRapidCommit:
		// Opaque to the codec, any length.
		m.rapid = m.rapid || top
	default:
		if codecKnows6(code) {
			return errSlow6
		}
		// Opaque to the codec: any content is valid.
	}
	return nil
}

// validDUID6 is whether dhcpv6.DUIDFromBytes accepts b.
func validDUID6(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	switch dhcpv6.DUIDType(binary.BigEndian.Uint16(b)) {
	case dhcpv6.DUID_LLT:
		return len(b) >= 2+2+4 // type, hardware type, time
	case dhcpv6.DUID_LL:
		return len(b) >= 2+2
	case dhcpv6.DUID_EN:
		return len(b) >= 2+4 // type, enterprise number
	case dhcpv6.DUID_UUID:
		return len(b) == 2+16
	}
	return true
}

// codecKnows6 is whether dhcpv6.ParseOption decodes code into a type of its
// own (which may reject the data) rather than keep it as opaque bytes.
// TestCodecKnows6 checks the list against the codec.
func codecKnows6(code dhcpv6.OptionCode) bool {
	switch code {
	case dhcpv6.OptionClientID, dhcpv6.OptionServerID, dhcpv6.OptionIANA, dhcpv6.OptionIATA,
		dhcpv6.OptionIAAddr, dhcpv6.OptionORO, dhcpv6.OptionPreference, dhcpv6.OptionElapsedTime,
		dhcpv6.OptionRelayMsg, dhcpv6.OptionStatusCode, dhcpv6.OptionUserClass, dhcpv6.OptionVendorClass,
		dhcpv6.OptionVendorOpts, dhcpv6.OptionInterfaceID, dhcpv6.OptionDNSRecursiveNameServer,
		dhcpv6.OptionDomainSearchList, dhcpv6.OptionIAPD, dhcpv6.OptionIAPrefix, dhcpv6.OptionSNTPServerList,
		dhcpv6.OptionInformationRefreshTime, dhcpv6.OptionRemoteID, dhcpv6.OptionFQDN, dhcpv6.OptionNTPServer,
		dhcpv6.OptionBootfileURL, dhcpv6.OptionBootfileParam, dhcpv6.OptionClientArchType, dhcpv6.OptionNII,
		dhcpv6.OptionClientLinkLayerAddr, dhcpv6.OptionDHCPv4Msg, dhcpv6.OptionDHCP4oDHCP6Server,
		dhcpv6.Option4RD, dhcpv6.Option4RDMapRule, dhcpv6.Option4RDNonMapRule, dhcpv6.OptionRelayPort:
		return true
	}
	return false
}

// The encoder: an answer is appended to a byte slice, in the order and
// with the bytes dhcpv6.Message.ToBytes gives for the same options (the
// tests decode every answer and check that encoding it again gives the
// same bytes).

func put16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }

func put32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// secs6 is a lifetime as dhcpv6.Duration writes it.
func secs6(d time.Duration) uint32 { return uint32(d.Round(time.Second) / time.Second) }

// openOpt6 appends the header of an option of code whose length is not
// known yet; closeOpt6 fills it in.
func openOpt6(b []byte, code dhcpv6.OptionCode) ([]byte, int) {
	return append(b, byte(code>>8), byte(code), 0, 0), len(b)
}

func closeOpt6(b []byte, at int) {
	n := len(b) - at - 4
	b[at+2], b[at+3] = byte(n>>8), byte(n)
}

// putOpt6 appends a whole option.
func putOpt6(b []byte, code dhcpv6.OptionCode, data []byte) []byte {
	b = put16(put16(b, uint16(code)), uint16(len(data)))
	return append(b, data...)
}

// putStatus6 appends a Status Code option.
func putStatus6(b []byte, code uint16, msg string) []byte {
	b = put16(put16(b, uint16(dhcpv6.OptionStatusCode)), uint16(2+len(msg)))
	b = put16(b, code)
	return append(b, msg...)
}

// putIAAddr6 appends an IA Address option without options of its own.
func putIAAddr6(b []byte, a netip.Addr, pref, valid time.Duration) []byte {
	b = put16(put16(b, uint16(dhcpv6.OptionIAAddr)), 24)
	a16 := a.As16()
	b = append(b, a16[:]...)
	return put32(put32(b, secs6(pref)), secs6(valid))
}
