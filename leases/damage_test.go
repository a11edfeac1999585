package leases

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// numbered is lease i of a test log: every lease has its own address, so a
// lost record is a missing address.
func numbered(i int) Lease {
	l := Lease{
		Network: "default", Kind: V4, IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Prefix: 16,
		MAC:      net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)},
		Hostname: fmt.Sprintf("guest%d", i),
		Expiry:   time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	if i%3 == 0 {
		l.Network, l.Kind, l.IP, l.DUID = "six", V6, netip.AddrFrom16([16]byte{0xfd, 15: byte(i), 14: byte(i >> 8)}), "00:03:00:01"
	}
	return l
}

// writeLog writes a log of n put records, lease i in record i, and returns
// its path, its bytes and where each record starts.
func writeLog(t testing.TB, n int) (path string, data []byte, offs []int) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "leases.log")
	data = append(data, logMagic...)
	for i := range n {
		offs = append(offs, len(data))
		l := numbered(i)
		data = framePut(data, &l)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data, offs
}

// present returns which of leases 0..n-1 the store holds.
func present(t testing.TB, s *Store, n int) []bool {
	t.Helper()
	have := map[netip.Addr]bool{}
	for _, network := range []string{"default", "six"} {
		ls, err := s.List(network)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			have[l.IP] = true
		}
	}
	out := make([]bool, n)
	for i := range out {
		out[i] = have[numbered(i).IP]
	}
	return out
}

func quarantined(t testing.TB, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// One damaged record in the middle of the log costs that record alone: Open
// keeps a copy of the log as it found it, keeps every other lease, says so,
// and rewrites the log without the damage.
func TestDamageMidFileKeepsTheRest(t *testing.T) {
	const n = 100
	for _, k := range []int{0, 1, 10, 50, n - 2} {
		for _, where := range []struct {
			name string
			at   int // into the record
		}{{"length", 2}, {"checksum", 5}, {"payload", frameHeader + 3}, {"last payload byte", -1}} {
			t.Run(fmt.Sprintf("record %d %s", k, where.name), func(t *testing.T) {
				path, data, offs := writeLog(t, n)
				at := offs[k] + where.at
				if where.at < 0 {
					at = offs[k+1] - 1
				}
				data[at] ^= 0x10
				os.WriteFile(path, data, 0o600)

				s, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				got := present(t, s, n)
				for i, ok := range got {
					if ok == (i == k) {
						t.Errorf("lease %d present = %v, want %v", i, ok, i != k)
					}
				}
				r := s.Repaired()
				if r == nil || !r.MidFile() || r.Damaged != 1 || r.LostRecords != 1 || r.TornBytes != 0 {
					t.Fatalf("Repaired() = %+v, want one damaged stretch of one record", r)
				}
				q := quarantined(t, path)
				if len(q) != 1 || r.Quarantine != q[0] {
					t.Fatalf("copies %q, Repaired().Quarantine %q", q, r.Quarantine)
				}
				if b, _ := os.ReadFile(q[0]); !bytes.Equal(b, data) {
					t.Error("the copy is not the damaged log byte for byte")
				}
				// The live log is rewritten without the damage.
				live, _ := os.ReadFile(path)
				if d := scanLog(live, len(logMagic), func(*record) {}); len(d) != 0 {
					t.Errorf("the live log is still damaged: %v", d)
				}
				l := numbered(k)
				putAll(t, s, []Lease{l})
				s2 := reopen(t, s, path)
				if r := s2.Repaired(); r != nil {
					t.Errorf("second Open repaired again: %v", r)
				}
				if got := present(t, s2, n); got[k] != true || got[k+1] != true {
					t.Error("leases lost across the reopen after the repair")
				}
			})
		}
	}
}

// The last record damaged is what a crash leaves: it is cut silently, with
// no copy, as before.
func TestDamagedLastRecordIsATornTail(t *testing.T) {
	const n = 20
	path, data, offs := writeLog(t, n)
	data[offs[n-1]+frameHeader+2] ^= 1
	os.WriteFile(path, data, 0o600)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r := s.Repaired(); r == nil || r.MidFile() || r.TornBytes != len(data)-offs[n-1] {
		t.Errorf("Repaired() = %+v", r)
	}
	if q := quarantined(t, path); len(q) != 0 {
		t.Errorf("copies kept of a torn tail: %q", q)
	}
	if live, _ := os.ReadFile(path); !bytes.Equal(live, data[:offs[n-1]]) {
		t.Error("the log is not cut back to its whole records")
	}
}

// Damage in the middle and a torn tail: both reported, both gone.
func TestDamageMidFileAndTornTail(t *testing.T) {
	const n = 30
	path, data, offs := writeLog(t, n)
	data[offs[7]+frameHeader] ^= 0xff
	data = data[:len(data)-4]
	os.WriteFile(path, data, 0o600)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := present(t, s, n)
	for i, ok := range got {
		if ok == (i == 7 || i == n-1) {
			t.Errorf("lease %d present = %v", i, ok)
		}
	}
	r := s.Repaired()
	if r == nil || r.Damaged != 1 || r.LostRecords != 1 || r.TornBytes != len(data)-offs[n-1] || r.Quarantine == "" {
		t.Errorf("Repaired() = %+v", r)
	}
}

// A log that cannot be copied is left exactly as it was, and Open fails
// saying why, rather than destroying the only evidence.
func TestDamageWithoutRoomForACopy(t *testing.T) {
	defer func(f func() time.Time) { timeNow = f }(timeNow)
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	timeNow = func() time.Time { return now }
	path, data, offs := writeLog(t, 10)
	data[offs[3]+frameHeader] ^= 0xff
	os.WriteFile(path, data, 0o600)
	// Every name a copy could take is taken.
	base := path + ".corrupt-20261208T030000Z"
	os.Mkdir(base, 0o700)
	for i := 1; i <= 100; i++ {
		os.Mkdir(fmt.Sprintf("%s.%d", base, i), 0o700)
	}
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded without keeping a copy")
	}
	if !strings.Contains(err.Error(), "copy could not be kept") {
		t.Errorf("error = %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
		t.Error("the damaged log was changed")
	}
}

// Random damage: whatever bytes are overwritten, every record none of
// whose bytes were touched is kept, and nothing else; the live log is
// clean afterwards and a copy of the damaged one is kept unless only the
// tail was hit.
func TestRandomDamageKeepsIntactRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 4))
	for iter := range 200 {
		n := 2 + rng.IntN(60)
		path, data, offs := writeLog(t, n)
		ends := append(offs[1:], len(data))
		hit := make([]bool, n)
		for range 1 + rng.IntN(4) {
			at := len(logMagic) + rng.IntN(len(data)-len(logMagic))
			span := 1 + rng.IntN(40)
			for p := at; p < min(at+span, len(data)); p++ {
				old := data[p]
				for data[p] == old {
					data[p] = byte(rng.Uint32())
				}
			}
			for i := range n {
				if offs[i] < min(at+span, len(data)) && at < ends[i] {
					hit[i] = true
				}
			}
		}
		os.WriteFile(path, data, 0o600)
		s, err := Open(path)
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		got := present(t, s, n)
		midHit := false
		for i := range n {
			if got[i] == hit[i] {
				t.Errorf("iteration %d: lease %d of %d present = %v, damaged = %v", iter, i, n, got[i], hit[i])
			}
			midHit = midHit || hit[i] && i < n-1 && !allHit(hit[i:])
		}
		r := s.Repaired()
		if r == nil || r.MidFile() != midHit || (len(quarantined(t, path)) == 1) != midHit {
			t.Errorf("iteration %d: Repaired() = %+v, copies %q, damage before the tail %v", iter, r, quarantined(t, path), midHit)
		}
		if live, _ := os.ReadFile(path); len(scanLog(live, len(logMagic), func(*record) {})) != 0 {
			t.Errorf("iteration %d: the live log is still damaged", iter)
		}
		s.Close()
	}
}

// allHit reports whether every record from here to the end was damaged:
// such a run is one torn tail.
func allHit(hit []bool) bool {
	for _, h := range hit {
		if !h {
			return false
		}
	}
	return true
}

// FuzzScanLogDamage damages a valid log at fuzzer-chosen places and checks
// that scanning never panics, replays only valid records, and replays
// every record none of whose bytes were touched.
func FuzzScanLogDamage(f *testing.F) {
	f.Add(uint16(20), uint8(1), byte(0x40), uint16(0), uint8(0), byte(0))
	f.Add(uint16(9), uint8(4), byte(0xff), uint16(300), uint8(30), byte(0x01))
	f.Add(uint16(100), uint8(200), byte(0x80), uint16(1000), uint8(2), byte(0x7f))
	const n = 40
	var clean []byte
	var offs []int
	clean = append(clean, logMagic...)
	for i := range n {
		offs = append(offs, len(clean))
		l := numbered(i)
		clean = framePut(clean, &l)
	}
	ends := append(offs[1:], len(clean))
	f.Fuzz(func(t *testing.T, at1 uint16, len1 uint8, x1 byte, at2 uint16, len2 uint8, x2 byte) {
		data := append([]byte(nil), clean...)
		hit := make([]bool, n)
		body := len(data) - len(logMagic)
		for _, d := range []struct {
			at, n int
			x     byte
		}{{int(at1) % body, int(len1), x1}, {int(at2) % body, int(len2), x2}} {
			if d.x == 0 || d.n == 0 {
				continue
			}
			from, to := len(logMagic)+d.at, min(len(logMagic)+d.at+d.n, len(data))
			for p := from; p < to; p++ {
				data[p] ^= d.x
			}
			for i := range n {
				if offs[i] < to && from < ends[i] {
					hit[i] = true
				}
			}
		}
		got := map[netip.Addr]bool{}
		scanLog(data, len(logMagic), func(r *record) {
			if r.op != opPut {
				return
			}
			if _, err := normalize(r.lease); err != nil {
				t.Fatalf("replayed an invalid lease: %v", err)
			}
			got[r.lease.IP] = true
		})
		for i := range n {
			if !hit[i] && !got[numbered(i).IP] {
				t.Errorf("intact record %d was not replayed", i)
			}
		}
	})
}

// BenchmarkScanLog replays a clean log of 100000 leases, and one with a
// damaged record in every thousand, which the scan resynchronises past.
func BenchmarkScanLog(b *testing.B) {
	const n = 100000
	clean := append([]byte(nil), logMagic...)
	var offs []int
	for i := range n {
		offs = append(offs, len(clean))
		l := numbered(i)
		clean = framePut(clean, &l)
	}
	damaged := append([]byte(nil), clean...)
	for i := 500; i < n; i += 1000 {
		damaged[offs[i]+frameHeader+4] ^= 0x20
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"clean", clean}, {"damaged", damaged}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				records := 0
				scanLog(tc.data, len(logMagic), func(*record) { records++ })
			}
		})
	}
}
