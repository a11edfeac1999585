package radvd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// errMalformed marks a Router Solicitation that RFC 4861 §6.1.1 says to
// discard silently.
var errMalformed = errors.New("malformed router solicitation")

const (
	rsHeaderLen = 8 // type, code, checksum, reserved
	optSLLA     = 1
)

// parseRS validates one ICMPv6 message read from the socket as a Router
// Solicitation (RFC 4861 §6.1.1): type 133, code 0, at least 8 octets,
// IP hop limit 255 (so it cannot come from off-link), every option at
// least 8 octets and inside the message, and no source link-layer address
// option when the IP source is unspecified. The checksum is the kernel's
// job. Unknown options are allowed and skipped.
//
// It walks the options itself instead of using ndp.ParseMessage, which
// rejects some well-formed options (lengths of 32 units and more).
func parseRS(b []byte, hopLimit int, src netip.Addr) (*ndp.RouterSolicitation, error) {
	if len(b) < rsHeaderLen {
		return nil, fmt.Errorf("%w: %d octets", errMalformed, len(b))
	}
	if t := ipv6.ICMPType(b[0]); t != ipv6.ICMPTypeRouterSolicitation {
		return nil, fmt.Errorf("%w: ICMPv6 type %d", errMalformed, b[0])
	}
	if b[1] != 0 {
		return nil, fmt.Errorf("%w: code %d", errMalformed, b[1])
	}
	if hopLimit != ndp.HopLimit {
		return nil, fmt.Errorf("%w: hop limit %d", errMalformed, hopLimit)
	}
	unspecified := !src.IsValid() || src.IsUnspecified()
	rs := &ndp.RouterSolicitation{}
	for opts := b[rsHeaderLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 {
			return nil, fmt.Errorf("%w: option of length 0", errMalformed)
		}
		l := int(opts[1]) * 8
		if l > len(opts) {
			return nil, fmt.Errorf("%w: option %d overruns the message", errMalformed, opts[0])
		}
		opt := opts[:l]
		opts = opts[l:]
		if opt[0] == optSLLA {
			if unspecified {
				return nil, fmt.Errorf("%w: source link-layer address from the unspecified address", errMalformed)
			}
			if l == 8 {
				rs.Options = append(rs.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: net.HardwareAddr(append([]byte(nil), opt[2:8]...))})
				continue
			}
		}
		rs.Options = append(rs.Options, &ndp.RawOption{Type: opt[0], Length: opt[1], Value: append([]byte(nil), opt[2:]...)})
	}
	return rs, nil
}
