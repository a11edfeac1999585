package shaping

import (
	"errors"
	"fmt"
	"math"

	"github.com/vnetd/vnetd/conf"
)

// Limits of <bandwidth> values, as libvirt and tc have them.
const (
	// MaxRate is the largest average, peak or floor, in kB/s: ×1000 it
	// still fits the 64-bit byte rates of the kernel.
	MaxRate = 1 << 54
	// MaxBurst is the largest burst, in KiB: ×1024 it still fits tc's
	// 32-bit byte counts (UINT_MAX >> 10).
	MaxBurst = 4194303
)

// mtu is the packet size libvirt computes the quantum with, and the one tc
// adds to its default bucket sizes.
const mtu = 1500

// BytesPerSecond converts a libvirt rate (average, peak, floor: kilobytes per
// second, tc's "kbps") to bytes per second.
func BytesPerSecond(kBps uint64) uint64 { return kBps * 1000 }

// BurstBytes converts a libvirt burst (kibibytes, tc's "kb") to bytes.
func BurstBytes(kib uint64) uint32 { return uint32(kib * 1024) }

// Quantum is the HTB quantum libvirt gives a class whose rate owner has
// inbound average avg (kB/s): ⌊avg×1024/8/1500⌋, at least 1 and at most
// 2^32−1 (virNetDevBandwidthCmdAddOptimalQuantum). avg×1024/8 is computed
// as avg×128, so values up to MaxRate do not overflow (libvirt's own
// avg×1024 wraps at exactly 2^54 and then yields 1).
func Quantum(avg uint64) uint32 {
	q := avg * 128 / mtu
	switch {
	case q < 1:
		return 1
	case q > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(q)
}

// ErrInvalid is wrapped by every error about a <bandwidth> value shaping
// cannot apply.
var ErrInvalid = errors.New("invalid bandwidth")

// Validate checks a <bandwidth> against what tc can take: every rate at
// most MaxRate kB/s, every burst at most MaxBurst KiB, and peak or burst
// only with an average. A nil bandwidth is valid (no limits). Floors are
// checked by admission (ports.CheckFloor), not here. The error names the
// direction and attribute and wraps ErrInvalid.
func Validate(bw *conf.Bandwidth) error {
	if bw == nil {
		return nil
	}
	var errs []error
	for _, d := range []struct {
		name string
		r    *conf.Rate
	}{{"inbound", bw.Inbound}, {"outbound", bw.Outbound}} {
		r := d.r
		if r == nil {
			continue
		}
		for _, v := range []struct {
			attr string
			v    uint64
		}{{"average", r.Average}, {"peak", r.Peak}, {"floor", r.Floor}} {
			if v.v > MaxRate {
				errs = append(errs, fmt.Errorf("<%s %s='%d'>: over the limit of %d kB/s: %w", d.name, v.attr, v.v, uint64(MaxRate), ErrInvalid))
			}
		}
		if r.Burst > MaxBurst {
			errs = append(errs, fmt.Errorf("<%s burst='%d'>: over the limit of %d KiB: %w", d.name, r.Burst, MaxBurst, ErrInvalid))
		}
		if r.Average == 0 && (r.Peak != 0 || r.Burst != 0) {
			errs = append(errs, fmt.Errorf("<%s>: peak and burst need an average: %w", d.name, ErrInvalid))
		}
		if d.name == "outbound" && r.Floor != 0 {
			errs = append(errs, fmt.Errorf("<outbound floor='%d'>: floor is only for inbound: %w", r.Floor, ErrInvalid))
		}
	}
	return errors.Join(errs...)
}

// shaped reports whether r asks for an HTB class on a device: an average
// (a floor alone is served by the network's bridge, not the port).
func shaped(r *conf.Rate) bool { return r != nil && r.Average != 0 }

// defaultBurst is the bucket, in bytes, shaping gives an HTB class of rate
// bytes/s when <bandwidth> sets no burst. tc's own default (rate/HZ + mtu,
// about 1600 bytes with high-resolution timers) is smaller than one
// TSO/GSO packet: HTB then loses the tokens that accrue while its watchdog
// timer is late, and undershoots by several per cent at high rates
// (bench/RESULTS.md). shaping keeps tc's default as a floor and otherwise
// allows defaultBurstTime worth of the rate, at most maxDefaultBurst.
func defaultBurst(rate uint64) uint32 {
	b := rate/1e9 + 1600 // tc: rate/HZ + mtu, HZ = 1e9 with hrtimers
	if t := rate / uint64(1e9/defaultBurstTime); t > b {
		b = t
	}
	return uint32(min(b, maxDefaultBurst))
}

const (
	// defaultBurstTime is the time (ns) worth of rate a default bucket holds.
	defaultBurstTime = 2_000_000
	// maxDefaultBurst caps the default bucket (bytes).
	maxDefaultBurst = 4 << 20
)

// fifoLimit is the packet limit of a pfifo leaf under a class of rate
// bytes/s: about fifoTime worth of full-size frames, at least fifoMin and at
// most fifoMax packets. Device defaults (txqueuelen: 1000 on a tap or
// veth, 32 on an IFB) are far too deep at 1 Mbit/s and too shallow at 1
// Gbit/s.
func fifoLimit(rate uint64) uint32 {
	n := rate / (1514 * (1e9 / fifoTime))
	return uint32(max(fifoMin, min(n, fifoMax)))
}

const (
	fifoTime = 100_000_000 // ns
	fifoMin  = 64
	fifoMax  = 1000
)
