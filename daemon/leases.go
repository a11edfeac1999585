package daemon

import (
	"net"
	"sort"
	"strings"
	"time"

	"github.com/vnetd/vnetd/api"
)

// forgetLeases drops the leases of a network that no longer exists, so no
// stale entries outlive it.
func (m *Manager) forgetLeases(network string) {
	if m.cfg.Leases == nil {
		return
	}
	if err := m.cfg.Leases.DeleteNetwork(network); err != nil {
		m.log.Warn("removing the leases of a gone network", "network", network, "err", err)
	}
}

// Leases lists a network's current DHCP leases (net-dhcp-leases); expired
// leases are never shown. mac, when set, filters by MAC address.
func (m *Manager) Leases(netID, mac string) ([]api.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, _, _, err := m.lookup(netID)
	if err != nil {
		return nil, err
	}
	out := []api.Lease{}
	if m.cfg.Leases == nil {
		return out, nil
	}
	var want net.HardwareAddr
	if mac != "" {
		if want, err = net.ParseMAC(mac); err != nil {
			return nil, failf(api.CodeInvalidRequest, n.Name, "mac %q is not a MAC address", mac)
		}
	}
	list, err := m.cfg.Leases.List(n.Name)
	if err != nil {
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	now := time.Now()
	for _, l := range list {
		if l.Expired(now) || (want != nil && !strings.EqualFold(l.MAC.String(), want.String())) {
			continue
		}
		al := api.Lease{Type: l.Kind.String(), IP: l.IP.String(), Prefix: l.Prefix, MAC: macString(l.MAC),
			Hostname: l.Hostname, ClientID: l.ClientID, IAID: l.IAID, Bridge: n.Bridge.Name}
		if l.Kind.String() == "ipv6" {
			al.ClientID = l.DUID
		}
		if !l.Expiry.IsZero() {
			al.Expiry = l.Expiry.Unix()
		}
		out = append(out, al)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP < out[j].IP })
	return out, nil
}

func macString(m net.HardwareAddr) string {
	if m == nil {
		return ""
	}
	return m.String()
}

// sweepLeases removes expired leases of every network.
func (m *Manager) sweepLeases() {
	if m.cfg.Leases == nil {
		return
	}
	if n, err := m.cfg.Leases.Sweep(time.Now()); err != nil {
		m.log.Warn("sweeping expired leases", "err", err)
	} else if n > 0 {
		m.log.Debug("swept expired leases", "count", n)
	}
}
