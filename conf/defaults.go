package conf

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/google/uuid"
)

// bridgeTemplate is libvirt's default bridge name template.
const bridgeTemplate = "virbr%d"

// maxBridgeIndex is the last N libvirt tries for virbrN.
const maxBridgeIndex = 256

// DefineContext is what define-time defaults need from outside the
// definition: the other definitions and the host's links. It is injected so
// the allocation is testable without a host.
type DefineContext struct {
	// Others are the other defined networks; a definition with n's own name
	// or UUID (the one being replaced) is ignored.
	Others []*Network
	// LinkExists reports whether a link of that name exists on the host. Nil
	// means no links exist.
	LinkExists func(name string) (bool, error)
	// Rand is the source for UUIDs and MACs; nil means crypto/rand.
	Rand io.Reader
}

// ApplyDefaults fills in what libvirt writes back into a definition at define
// time (libvirt-behavior.md §2): a random UUID; for nat/route/open/isolated
// networks the first free virbrN bridge name (or the first free N of a
// name with one %d) and a random 52:54:00 bridge MAC. An explicit bridge name
// that another network uses is an error. STP on and delay 0, nat for
// <forward/> and the IP prefixes are defaults of the model itself.
func (n *Network) ApplyDefaults(ctx DefineContext) error {
	r := ctx.Rand
	if r == nil {
		r = rand.Reader
	}
	if n.UUID == (uuid.UUID{}) {
		id, err := uuid.NewRandomFromReader(r)
		if err != nil {
			return fmt.Errorf("network %q: generating uuid: %w", n.Name, err)
		}
		n.UUID = id
	}
	if !n.Forward.Mode.Managed() {
		return nil
	}
	taken := map[string]bool{}
	for _, o := range ctx.Others {
		if o == nil || o.Name == n.Name || o.UUID == n.UUID {
			continue
		}
		if o.Bridge.Name != "" {
			taken[o.Bridge.Name] = true
		}
	}
	name := n.Bridge.Name
	if name == "" || strings.Contains(name, "%d") {
		template := name
		if template == "" {
			template = bridgeTemplate
		}
		chosen, err := allocBridgeName(template, taken, ctx.LinkExists)
		if err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
		n.Bridge.Name = chosen
	} else if taken[name] {
		return &FieldError{Path: "network/bridge", Msg: fmt.Sprintf("bridge name %q is already in use by another network", name)}
	}
	if n.MAC == nil {
		mac, err := randomMAC(r)
		if err != nil {
			return fmt.Errorf("network %q: generating bridge mac: %w", n.Name, err)
		}
		n.MAC = mac
	}
	return nil
}

func allocBridgeName(template string, taken map[string]bool, linkExists func(string) (bool, error)) (string, error) {
	for i := 0; i <= maxBridgeIndex; i++ {
		name := strings.Replace(template, "%d", fmt.Sprint(i), 1)
		if taken[name] {
			continue
		}
		if linkExists != nil {
			exists, err := linkExists(name)
			if err != nil {
				return "", fmt.Errorf("bridge name %q: checking host links: %w", name, err)
			}
			if exists {
				continue
			}
		}
		return name, nil
	}
	return "", fmt.Errorf("no free bridge name for template %q (tried 0-%d)", template, maxBridgeIndex)
}

// randomMAC makes a MAC in QEMU/KVM's 52:54:00 range, as libvirt does.
func randomMAC(r io.Reader) (net.HardwareAddr, error) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 0}
	if _, err := io.ReadFull(r, mac[3:]); err != nil {
		return nil, err
	}
	return mac, nil
}
