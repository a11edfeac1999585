package shaping

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// clock converts HTB buckets from bytes to the kernel's packet-scheduler
// ticks, which tc_htb_opt's buffer and cbuffer are in.
type clock struct {
	ticksPerSec float64
}

// defaultClock is the kernel's fixed psched clock since 2.6.x: one tick is
// 64 ns (PSCHED_SHIFT 6).
var defaultClock = clock{ticksPerSec: 1e9 / 64}

// parsePsched reads /proc/net/psched as iproute2's tc_core_init does: four
// hex numbers t2us, us2t, clock resolution and HZ; a tick is t2us/us2t
// microseconds scaled by the clock resolution (the kernel advertises 1000
// for t2us with a nanosecond clock, which really means us2t).
func parsePsched(s string) (clock, error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return clock{}, fmt.Errorf("psched: want at least 3 fields, got %q", s)
	}
	var v [3]float64
	for i := range v {
		n, err := strconv.ParseUint(f[i], 16, 32)
		if err != nil || n == 0 {
			return clock{}, fmt.Errorf("psched: bad field %q", f[i])
		}
		v[i] = float64(n)
	}
	t2us, us2t, res := v[0], v[1], v[2]
	if res == 1e9 {
		t2us = us2t
	}
	tickInUsec := t2us / us2t * (res / 1e6)
	return clock{ticksPerSec: tickInUsec * 1e6}, nil
}

// ticks is the time, in ticks, bytes take at rate bytes/s (tc's
// tc_calc_xmittime), saturated to 32 bits.
func (c clock) ticks(bytes uint32, rate uint64) uint32 {
	if rate == 0 {
		return math.MaxUint32
	}
	t := float64(bytes) * c.ticksPerSec / float64(rate)
	if t >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(t)
}
