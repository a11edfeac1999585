package shaping

import (
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/ports"
)

// fakeKernel holds tc objects by identity and applies plans with the
// kernel's rules, strictly: add needs a free identity and an existing
// parent, change and delete an existing object, a class cannot go while a
// filter points at it or it has children.
type fakeKernel map[string]Object

func (k fakeKernel) apply(p Plan) error {
	for _, st := range p {
		key := st.Obj.key()
		_, exists := k[key]
		switch st.Op {
		case OpAdd:
			if exists {
				return fmt.Errorf("%s: exists", st)
			}
			if err := k.parentExists(st.Obj); err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
			k[key] = st.Obj
		case OpChange:
			if !exists {
				return fmt.Errorf("%s: no such object", st)
			}
			k[key] = st.Obj
		case OpDelete:
			if !exists {
				return fmt.Errorf("%s: no such object", st)
			}
			if c, ok := st.Obj.(Class); ok {
				for _, o := range k {
					switch o := o.(type) {
					case Filter:
						if o.Dev == c.Dev && o.FlowID == c.ID {
							return fmt.Errorf("%s: busy: %s points at it", st, o.render(true))
						}
					case Class:
						if o.Dev == c.Dev && o.Parent == c.ID {
							return fmt.Errorf("%s: busy: child %s", st, o.ID)
						}
					case Qdisc:
						if o.Dev == c.Dev && o.Parent == c.ID {
							delete(k, o.key()) // the leaf goes with its class
						}
					}
				}
			}
			delete(k, key)
		default:
			return fmt.Errorf("bad op %v", st.Op)
		}
	}
	return nil
}

func (k fakeKernel) parentExists(o Object) error {
	var parent string
	switch o := o.(type) {
	case Qdisc:
		if o.Parent == HandleRoot || o.Parent == HandleIngress {
			return nil
		}
		parent = Class{Dev: o.Dev, ID: o.Parent}.key()
	case Class:
		if o.Parent.Minor() == 0 {
			parent = Qdisc{Dev: o.Dev, Handle: o.Parent}.key()
		} else {
			parent = Class{Dev: o.Dev, ID: o.Parent}.key()
		}
	case Filter:
		parent = Qdisc{Dev: o.Dev, Handle: o.Parent}.key()
		if o.FlowID != 0 {
			if _, ok := k[Class{Dev: o.Dev, ID: o.FlowID}.key()]; !ok {
				return fmt.Errorf("flowid %s does not exist", o.FlowID)
			}
		}
	default:
		return nil
	}
	if _, ok := k[parent]; !ok {
		return fmt.Errorf("parent %s does not exist", parent)
	}
	return nil
}

func (k fakeKernel) String() string {
	var lines []string
	for _, o := range k {
		lines = append(lines, o.render(false))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type simPort struct {
	mac   net.HardwareAddr
	floor uint64
	avg   uint64
	id    uint16
}

func (p *simPort) port() *conf.Port {
	return &conf.Port{MAC: p.mac, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: p.floor, Average: p.avg}}}
}

type floorSim struct {
	t      *testing.T
	rng    *rand.Rand
	n      *conf.Network
	k      fakeKernel
	ports  []*simPort
	ids    ClassIDs
	nMACs  int
	plugs  int
	denied int
}

func (s *floorSim) sum(except *simPort) uint64 {
	var sum uint64
	for _, p := range s.ports {
		if p != except {
			sum += p.floor
		}
	}
	return sum
}

func (s *floorSim) limit() uint64 {
	in := s.n.Bandwidth.Inbound
	if in.Peak != 0 {
		return in.Peak
	}
	return in.Average
}

func (s *floorSim) newMAC() net.HardwareAddr {
	s.nMACs++
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(s.nMACs >> 16), byte(s.nMACs >> 8), byte(s.nMACs)}
}

// randFloor is a floor that usually fits and sometimes overcommits.
func (s *floorSim) randFloor() uint64 {
	return 1 + s.rng.Uint64N(s.limit()/3+1)
}

func (s *floorSim) randAvg() uint64 {
	if s.rng.IntN(2) == 0 {
		return 0
	}
	return 1 + s.rng.Uint64N(2*s.limit())
}

func (s *floorSim) plug() {
	t := s.t
	p := &simPort{mac: s.newMAC(), floor: s.randFloor(), avg: s.randAvg()}
	others := s.sum(nil)
	if err := ports.CheckFloor(s.n, p.port(), others); err != nil {
		if others+p.floor <= s.limit() {
			t.Fatalf("admission refused a floor of %d with %d of %d used: %v", p.floor, others, s.limit(), err)
		}
		s.denied++
		return
	}
	id, err := s.ids.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	p.id = id
	plan, err := PlanPlug("br0", s.n.Bandwidth, PortFloor(p.port(), id), others, LeafPfifo)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.k.apply(plan); err != nil {
		t.Fatalf("plug %d: %v", id, err)
	}
	s.ports = append(s.ports, p)
	s.plugs++
}

func (s *floorSim) unplug(i int) {
	p := s.ports[i]
	plan, err := PlanUnplug("br0", s.n.Bandwidth, Floor{ClassID: p.id}, s.sum(p))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.k.apply(plan); err != nil {
		s.t.Fatalf("unplug %d: %v", p.id, err)
	}
	s.ids.Release(p.id)
	s.ports = slices.Delete(s.ports, i, i+1)
}

func (s *floorSim) update(i int) {
	p := s.ports[i]
	q := *p
	q.floor = s.randFloor()
	q.avg = s.randAvg()
	if s.rng.IntN(3) == 0 {
		q.mac = s.newMAC()
	}
	others := s.sum(p)
	if err := ports.CheckFloor(s.n, q.port(), others); err != nil {
		s.denied++
		return
	}
	plan, err := PlanUpdate("br0", s.n.Bandwidth, PortFloor(q.port(), q.id), others, LeafPfifo)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.k.apply(plan); err != nil {
		s.t.Fatalf("update %d: %v", p.id, err)
	}
	*p = q
}

// check verifies the invariants: 1:2 gets what the floors leave; every
// port has its class, leaf and filter under a unique id that the bitmap
// holds; nothing else is there.
func (s *floorSim) check(base int) {
	t := s.t
	t.Helper()
	in := s.n.Bandwidth.Inbound
	sum := s.sum(nil)
	if sum > s.limit() {
		t.Fatalf("floors sum to %d, over the limit %d", sum, s.limit())
	}
	nf, ok := s.k[Class{Dev: "br0", ID: NewHandle(1, 2)}.key()].(Class)
	if !ok {
		t.Fatal("class 1:2 is gone")
	}
	want := BytesPerSecond(NoFloorRate(in, sum))
	if nf.Rate != want {
		t.Fatalf("1:2 rate %d, want %d (floors %d)", nf.Rate, want, sum)
	}
	if in.Peak == 0 {
		rest := uint64(1)
		if sum < in.Average {
			rest = in.Average - sum
		}
		if nf.Rate != rest*1000 {
			t.Fatalf("1:2 rate %d, want base − floors = %d kB/s", nf.Rate, rest)
		}
	}
	_, ceil := rates(in)
	var ids []uint16
	seen := map[uint16]bool{}
	for _, p := range s.ports {
		if seen[p.id] {
			t.Fatalf("class id %d used twice", p.id)
		}
		seen[p.id] = true
		ids = append(ids, p.id)
		c, ok := s.k[Class{Dev: "br0", ID: NewHandle(1, p.id)}.key()].(Class)
		if !ok || c.Rate != p.floor*1000 || c.Ceil != ceil || c.Parent != NewHandle(1, 1) || c.Quantum != Quantum(p.avg) {
			t.Fatalf("class 1:%x = %+v, want floor %d", p.id, c, p.floor)
		}
		if _, ok := s.k[Qdisc{Dev: "br0", Handle: NewHandle(p.id, 0)}.key()]; !ok {
			t.Fatalf("leaf %x: missing", p.id)
		}
		f, ok := s.k[Filter{Dev: "br0", Parent: NewHandle(1, 0), Prio: prioFloor, Handle: 0x800<<20 | uint32(p.id)}.key()].(Filter)
		if !ok || f.FlowID != NewHandle(1, p.id) || !slices.Equal(f.Keys, floorFilter("br0", Floor{MAC: p.mac}).Keys) {
			t.Fatalf("filter of %x = %+v", p.id, f)
		}
	}
	slices.Sort(ids)
	if got := s.ids.IDs(); !slices.Equal(got, ids) {
		t.Fatalf("bitmap %v, ports %v", got, ids)
	}
	if len(s.k) != base+3*len(s.ports) {
		t.Fatalf("%d objects, want %d:\n%s", len(s.k), base+3*len(s.ports), s.k)
	}
}

// TestFloorStateMachine plugs, updates and unplugs floors in random order
// (admitted by ports.CheckFloor, as the daemon does) on a fake kernel and
// checks the invariants after every step; unplugging everything must give
// back exactly the network's initial configuration.
func TestFloorStateMachine(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 8))
			in := &conf.Rate{Average: 1000 + rng.Uint64N(200000)}
			if seed%2 == 0 {
				in.Peak = in.Average + rng.Uint64N(in.Average)
			}
			if seed%5 == 0 {
				in.Burst = 1 + rng.Uint64N(1000)
			}
			s := &floorSim{t: t, rng: rng, k: fakeKernel{},
				n: &conf.Network{Name: "n", Forward: conf.Forward{Mode: conf.ForwardNAT}, Bandwidth: &conf.Bandwidth{Inbound: in}}}
			plan, err := PlanNetwork("br0", 5, s.n.Bandwidth, 0, LeafPfifo)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.k.apply(plan); err != nil {
				t.Fatal(err)
			}
			initial, base := s.k.String(), len(s.k)
			for range 300 {
				switch r := rng.IntN(10); {
				case r < 4 || len(s.ports) == 0:
					s.plug()
				case r < 7:
					s.unplug(rng.IntN(len(s.ports)))
				default:
					s.update(rng.IntN(len(s.ports)))
				}
				s.check(base)
			}
			for len(s.ports) > 0 {
				s.unplug(rng.IntN(len(s.ports)))
				s.check(base)
			}
			if got := s.k.String(); got != initial {
				t.Fatalf("unplugging everything did not restore the network:\n%s", lineDiff(initial, got))
			}
			if s.ids.String() != "0-2" {
				t.Fatalf("bitmap %s after unplugging everything", s.ids)
			}
			if s.plugs == 0 || s.denied == 0 {
				t.Logf("plugs %d, denied %d", s.plugs, s.denied)
			}
		})
	}
}

// TestNoFloorRate pins the rate of class 1:2: libvirt's base − floorSum
// without a peak; with one, never above the average.
func TestNoFloorRate(t *testing.T) {
	for _, c := range []struct {
		avg, peak, sum, want uint64
	}{
		{100, 0, 0, 100},
		{100, 0, 60, 40},
		{100, 0, 90, 10},
		{100, 0, 100, 1}, // HTB needs a rate
		{100, 0, 150, 1},
		{100, 200, 0, 100},
		{100, 200, 60, 100},
		{100, 200, 150, 50},
		{100, 200, 200, 1},
	} {
		if got := NoFloorRate(&conf.Rate{Average: c.avg, Peak: c.peak}, c.sum); got != c.want {
			t.Errorf("NoFloorRate(avg %d, peak %d, floors %d) = %d, want %d", c.avg, c.peak, c.sum, got, c.want)
		}
	}
}
