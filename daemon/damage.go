package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vnetd/vnetd/leases"
)

// descStorageDamage counts what this vnetd found wrong with its files when
// it started and repaired. A torn tail of the lease log is what a crash
// leaves; the other kinds are damage no crash makes (a disk, or something
// writing to vnetd's files), each logged at Error with the copy kept of
// the damaged file.
var descStorageDamage = prometheus.NewDesc("vnetd_storage_damage_total",
	"Damage found in vnetd's files at start and repaired, by file and kind: leases.log mid_file (damaged records dropped, the rest kept, a copy kept) or torn_tail (a crash's unacknowledged append cut); vnetd.db unreadable (moved aside, live state rebuilt from the host).",
	[]string{"file", "kind"}, nil)

// damageCollector reports vnetd_storage_damage_total. It is registered next
// to the collector of metrics.go, as its own, since the counts are fixed at
// Open and need none of the per-network views.
type damageCollector struct{ m *Manager }

func (c *damageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descStorageDamage }

func (c *damageCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch}
	e.counter(descStorageDamage, boolCount(c.m.stateDamaged), "vnetd.db", "unreadable")
	// The lease store is the daemon's (Run opens it), or none.
	lr, ok := c.m.cfg.Leases.(interface{ Repaired() *leases.Repair })
	if !ok {
		return
	}
	r := lr.Repaired()
	e.counter(descStorageDamage, boolCount(r != nil && r.MidFile()), "leases.log", "mid_file")
	e.counter(descStorageDamage, boolCount(r != nil && r.TornBytes > 0), "leases.log", "torn_tail")
}

func boolCount(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
