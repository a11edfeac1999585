package leases

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func putAll(t *testing.T, s *Store, ls []Lease) {
	t.Helper()
	for _, l := range ls {
		if err := s.Put(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
}

func reopen(t *testing.T, s *Store, path string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

// A crash in the middle of an append leaves part of a record at the end
// of the log. It was never reported durable, so Open cuts it off, keeps
// every whole record, and says what it did.
func TestTornTailCutOnOpen(t *testing.T) {
	ls := sampleLeases(t)
	for _, tc := range []struct {
		name string
		tail func(whole []byte) []byte
	}{
		{"half a header", func([]byte) []byte { return []byte{0, 0, 0} }},
		{"half a record", func(whole []byte) []byte { return whole[:len(whole)/2] }},
		{"bad checksum", func(whole []byte) []byte {
			b := append([]byte(nil), whole...)
			b[len(b)-1] ^= 0xff
			return b
		}},
		{"zero length", func([]byte) []byte { return make([]byte, 64) }},
		{"huge length", func([]byte) []byte { return []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openTest(t)
			putAll(t, s, ls[:3])
			s.Close()
			before, _ := os.ReadFile(path)
			extra := ls[3]
			whole := framePut(nil, &extra)
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail(whole))
			f.Close()
			s2, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if r := s2.Repaired(); r == nil || r.MidFile() || r.TornBytes != len(tc.tail(whole)) {
				t.Errorf("Repaired() = %+v after a torn tail of %d bytes", r, len(tc.tail(whole)))
			}
			// A crash's torn append is routine: no copy is kept.
			if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
				t.Errorf("copies kept of a log with a torn tail: %q", m)
			}
			after, _ := os.ReadFile(path)
			if string(after) != string(before) {
				t.Errorf("log is %d bytes after the repair, want the %d whole ones", len(after), len(before))
			}
			if got, _ := s2.List("default"); len(got) != 3 {
				t.Errorf("%d leases after the repair, want 3", len(got))
			}
			// The repaired log takes appends as before.
			putAll(t, s2, ls[3:])
			if got, _ := reopen(t, s2, path).List("other"); len(got) != 1 {
				t.Errorf("lease appended after the repair is gone")
			}
		})
	}
}

func TestNotALeaseLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.log")
	os.WriteFile(path, []byte("something else entirely"), 0o600)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "not a vnetd lease log") {
		t.Fatalf("Open of a foreign file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "something else entirely" {
		t.Error("Open changed a file it refused")
	}
}

func TestSecondOpenLocked(t *testing.T) {
	defer func(w time.Duration) { lockWait = w }(lockWait)
	lockWait = 100 * time.Millisecond
	s, path := openTest(t)
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("a second Open of a log in use succeeded")
	} else if !strings.Contains(err.Error(), "another vnetd") {
		t.Errorf("error = %v", err)
	}
	s.Close()
	s3, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}

// Rewriting the log once it is mostly dead records keeps exactly the live
// leases, and the rewritten log is locked and appended to as before.
func TestCompaction(t *testing.T) {
	defer func(w time.Duration) { lockWait = w }(lockWait)
	lockWait = 100 * time.Millisecond
	s, path := openTest(t)
	s.compactMin = 4096
	l := sampleLeases(t)[0]
	for i := range 500 {
		l.Hostname = "h" + string(rune('a'+i%26))
		putAll(t, s, []Lease{l})
	}
	putAll(t, s, sampleLeases(t)[1:])
	if err := s.Delete(context.Background(), "other", netip.MustParseAddr("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Size() > 3*4096 {
		t.Errorf("log is %d bytes after 500 rewrites of one lease: not compacted", st.Size())
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	if _, err := Open(path); err == nil {
		t.Error("the rewritten log is not locked")
	}
	want, _ := s.List("default")
	got, _ := reopen(t, s, path).List("default")
	if len(got) != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("after compaction and reopen:\n got %+v\nwant %+v", got, want)
	}
}

// Whatever sequence of writes: the leases read back from the log are the
// leases the store held.
func TestReplayMatchesMemory(t *testing.T) {
	s, path := openTest(t)
	s.compactMin = 2048
	rng := rand.New(rand.NewPCG(1, 2))
	nets := []string{"a", "b", "c"}
	exp := time.Date(2030, 1, 1, 0, 0, 0, 123, time.UTC)
	for i := range 2000 {
		n := nets[rng.IntN(len(nets))]
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(40))})
		var err error
		switch r := rng.IntN(100); {
		case r < 60:
			err = s.Put(context.Background(), Lease{Network: n, Kind: V4, IP: ip, Prefix: 24,
				MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i)}, Hostname: strings.Repeat("x", rng.IntN(30)),
				ClientID: "01:02", IAID: uint32(i), Expiry: exp.Add(time.Duration(rng.IntN(10)-5) * time.Hour)})
		case r < 90:
			err = s.Delete(context.Background(), n, ip)
		case r < 95:
			_, err = s.Sweep(exp)
		default:
			err = s.DeleteNetwork(n)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]Lease{}
	for _, n := range nets {
		want[n], _ = s.List(n)
	}
	wantNets, _ := s.Networks()
	s2 := reopen(t, s, path)
	for _, n := range nets {
		got, _ := s2.List(n)
		if len(got) != len(want[n]) {
			t.Fatalf("network %s: %d leases after reopen, want %d", n, len(got), len(want[n]))
		}
		for i := range got {
			if !sameLease(got[i], want[n][i]) {
				t.Errorf("network %s lease %d:\n got %+v\nwant %+v", n, i, got[i], want[n][i])
			}
		}
	}
	if gotNets, _ := s2.Networks(); !reflect.DeepEqual(gotNets, wantNets) {
		t.Errorf("Networks = %q, want %q", gotNets, wantNets)
	}
}

// A write that fails is reported to its submitter and is not replayed;
// the writes after it fail too rather than land after a hole.
func TestFailedWrite(t *testing.T) {
	s, _ := openTest(t)
	putAll(t, s, sampleLeases(t)[:1])
	s.f.Close() // the disk goes away
	if err := s.Put(context.Background(), sampleLeases(t)[1]); err == nil {
		t.Fatal("Put on a closed log succeeded")
	}
	if err := s.Put(context.Background(), sampleLeases(t)[2]); err == nil {
		t.Fatal("Put after a failed write succeeded")
	}
	if got, _ := s.List("default"); len(got) != 1 {
		t.Errorf("%d leases visible, want the 1 durable one", len(got))
	}
}

func TestImportBolt(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "leases.db")
	db, err := bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls := sampleLeases(t)
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("leases"))
		if err != nil {
			return err
		}
		for i, l := range ls {
			r := boltRecord{Network: l.Network, Kind: l.Kind.String(), IP: l.IP.String(), Prefix: l.Prefix,
				MAC: l.MAC.String(), ClientID: l.ClientID, DUID: l.DUID, IAID: l.IAID, Hostname: l.Hostname}
			if !l.Expiry.IsZero() {
				r.Expiry = l.Expiry.UTC().Format(time.RFC3339Nano)
			}
			v, _ := json.Marshal(r)
			if err := b.Put([]byte{byte(i)}, v); err != nil {
				return err
			}
		}
		return b.Put([]byte{99}, []byte("{not json"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(filepath.Join(dir, "leases.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	imported, skipped, err := s.ImportBolt(old)
	if err != nil || imported != 4 || skipped != 1 {
		t.Fatalf("ImportBolt = %d, %d, %v; want 4, 1, nil", imported, skipped, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("the old database is still there under its name: it would be imported again")
	}
	if _, err := os.Stat(old + ".imported"); err != nil {
		t.Error(err)
	}
	got, _ := s.List("default")
	want := []Lease{ls[1], ls[0], ls[2]}
	for i := range want {
		if i >= len(got) || !sameLease(got[i], want[i]) {
			t.Errorf("imported lease %d = %+v, want %+v", i, got, want[i])
		}
	}
}

// FuzzScanLog: replaying any bytes never panics, reports damaged stretches
// in order inside the data, and the records it replayed, put back to back
// without the damage, replay again as the same records with no damage.
func FuzzScanLog(f *testing.F) {
	var seed []byte
	seed = append(seed, logMagic...)
	for _, l := range sampleLeases(f) {
		seed = framePut(seed, &l)
	}
	var start int
	seed, start = beginFrame(seed)
	seed = endFrame(appendDel(seed, "default", netip.MustParseAddr("192.168.122.2")), start)
	seed, start = beginFrame(seed)
	seed = endFrame(appendDrop(seed, "other"), start)
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	mid := append([]byte(nil), seed...)
	mid[len(logMagic)+20] ^= 0x40
	f.Add(mid)
	f.Add([]byte(logMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < len(logMagic) {
			return
		}
		scan := func(b []byte) (n int, damage []stretch) {
			damage = scanLog(b, len(logMagic), func(r *record) {
				if r.op == opPut {
					if _, err := normalize(r.lease); err != nil {
						t.Fatalf("replayed an invalid lease: %v", err)
					}
				}
				n++
			})
			return n, damage
		}
		n, damage := scan(data)
		at := len(logMagic)
		intact := append([]byte(nil), data[:at]...)
		for _, d := range damage {
			if d.off < at || d.end <= d.off || d.end > len(data) || d.why == nil {
				t.Fatalf("damaged stretch [%d, %d) after %d in %d bytes", d.off, d.end, at, len(data))
			}
			intact = append(intact, data[at:d.off]...)
			at = d.end
		}
		intact = append(intact, data[at:]...)
		if n2, damage2 := scan(intact); n2 != n || len(damage2) != 0 {
			t.Fatalf("rescan of the intact records: %d records and damage %v, first %d", n2, damage2, n)
		}
	})
}

// A crash while the log was being created leaves part of its header: that
// is a new, empty log, not a foreign file.
func TestCreationCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.log")
	os.WriteFile(path, []byte(logMagic[:3]), 0o600)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, s, sampleLeases(t)[:1])
	if got, _ := reopen(t, s, path).List("default"); len(got) != 1 {
		t.Errorf("%d leases, want 1", len(got))
	}
}
