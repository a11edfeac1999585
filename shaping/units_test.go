package shaping

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

// TestQuantum checks the conformance README's quantums (libvirt's
// virnetdevbandwidthtest) and the clamping.
func TestQuantum(t *testing.T) {
	for _, c := range []struct {
		avg  uint64
		want uint32
	}{
		{0, 1},
		{1, 1},                  // README case 4
		{11, 1},                 // 11×128/1500 = 0.9
		{12, 1},                 // 1.02
		{24, 2},                 // 2.05
		{1024, 87},              // README case 2
		{4294967295, 366503875}, // README case 5
		{33554432000, 2863311530},
		{MaxRate, math.MaxUint32}, // clamped (libvirt's avg×1024 would wrap to 0 → 1)
	} {
		if got := Quantum(c.avg); got != c.want {
			t.Errorf("Quantum(%d) = %d, want %d", c.avg, got, c.want)
		}
	}
	// avg×128/1500 is libvirt's avg×1024/8/1500 wherever that does not overflow.
	for _, avg := range []uint64{1, 7, 1000, 12345, 99999999, 1 << 40, 1<<54 - 1} {
		want := avg * 1024 / 8 / 1500
		if want > math.MaxUint32 {
			want = math.MaxUint32
		}
		if want == 0 {
			want = 1
		}
		if got := Quantum(avg); uint64(got) != want {
			t.Errorf("Quantum(%d) = %d, libvirt %d", avg, got, want)
		}
	}
}

func TestUnits(t *testing.T) {
	if got := BytesPerSecond(1024); got != 1024000 {
		t.Errorf("BytesPerSecond(1024) = %d", got)
	}
	if got := BytesPerSecond(MaxRate); got != 18014398509481984000 {
		t.Errorf("BytesPerSecond(MaxRate) = %d", got)
	}
	if got := BurstBytes(4); got != 4096 {
		t.Errorf("BurstBytes(4) = %d", got)
	}
	if got := BurstBytes(MaxBurst); got != 4294966272 {
		t.Errorf("BurstBytes(MaxBurst) = %d", got)
	}
}

func TestDefaultBurst(t *testing.T) {
	for _, c := range []struct {
		rate uint64
		want uint32
	}{
		{125000, 1600},      // 1 Mbit/s: tc's rate/HZ + mtu
		{1250000, 2500},     // 10 Mbit/s: 2 ms
		{125000000, 250000}, // 1 Gbit/s
		{1 << 40, 4 << 20},  // capped
		{MaxRate * 1000, 4 << 20},
	} {
		if got := defaultBurst(c.rate); got != c.want {
			t.Errorf("defaultBurst(%d) = %d, want %d", c.rate, got, c.want)
		}
	}
}

func TestFifoLimit(t *testing.T) {
	for _, c := range []struct {
		rate uint64
		want uint32
	}{
		{1000, fifoMin},
		{125000, fifoMin},
		{1250000, 82},
		{12500000, 825},
		{125000000, fifoMax},
		{MaxRate * 1000, fifoMax},
	} {
		if got := fifoLimit(c.rate); got != c.want {
			t.Errorf("fifoLimit(%d) = %d, want %d", c.rate, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := []*conf.Bandwidth{
		nil,
		{},
		{Inbound: rate(MaxRate, MaxRate, MaxRate, MaxBurst), Outbound: rate(MaxRate, MaxRate, 0, MaxBurst)},
		{Inbound: rate(0, 0, 10, 0)},
	}
	for _, bw := range ok {
		if err := Validate(bw); err != nil {
			t.Errorf("Validate(%s) = %v", describe(bw), err)
		}
	}
	// All problems are reported, each naming its attribute.
	err := Validate(&conf.Bandwidth{Inbound: rate(MaxRate+1, 0, MaxRate+1, 0), Outbound: rate(0, 1, 1, MaxBurst+1)})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v, want ErrInvalid", err)
	}
	for _, want := range []string{
		"<inbound average='18014398509481985'>",
		"<inbound floor='18014398509481985'>",
		"<outbound burst='4194304'>",
		"<outbound>: peak and burst need an average",
		"<outbound floor='1'>: floor is only for inbound",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q lacks %q", err, want)
		}
	}
}

func TestParsePsched(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64 // ticks per second
	}{
		{"000003e8 00000040 000f4240 3b9aca00\n", 1e9 / 64}, // this kernel: 64 ns ticks
		{"000003e8 00000040 3b9aca00 3b9aca00\n", 1e9},      // nanosecond clock resolution hack
		{"00000001 00000001 000f4240 00000064\n", 1e6},      // old microsecond ticks
	} {
		got, err := parsePsched(c.in)
		if err != nil || got.ticksPerSec != c.want {
			t.Errorf("parsePsched(%q) = %v, %v; want %v", c.in, got.ticksPerSec, err, c.want)
		}
	}
	for _, bad := range []string{"", "1 2", "zz 40 f4240", "0 40 f4240"} {
		if _, err := parsePsched(bad); err == nil {
			t.Errorf("parsePsched(%q) succeeded", bad)
		}
	}
	c := defaultClock
	// tc: 1600 bytes at 125000 bytes/s = 12.8 ms = 200000 ticks of 64 ns.
	if got := c.ticks(1600, 125000); got != 200000 {
		t.Errorf("ticks(1600, 125000) = %d", got)
	}
	if got := c.ticks(MaxBurst*1024, 1000); got != math.MaxUint32 {
		t.Errorf("ticks saturate: %d", got)
	}
	if got := c.ticks(1, 0); got != math.MaxUint32 {
		t.Errorf("ticks at rate 0: %d", got)
	}
}
