package shaping

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/vnetd/vnetd/conf"
)

// Handle is a tc handle, major:minor.
type Handle uint32

// Special parents.
const (
	// HandleRoot is the parent of a device's root (egress) qdisc.
	HandleRoot Handle = 0xFFFFFFFF
	// HandleIngress is the parent of a device's ingress qdisc.
	HandleIngress Handle = 0xFFFFFFF1
)

// ingressQdisc is the handle of the ingress qdisc, "ffff:", which is also
// the parent of its filters.
const ingressQdisc Handle = 0xFFFF0000

// NewHandle makes major:minor.
func NewHandle(major, minor uint16) Handle { return Handle(uint32(major)<<16 | uint32(minor)) }

// Major is the qdisc part of h.
func (h Handle) Major() uint16 { return uint16(h >> 16) }

// Minor is the class part of h.
func (h Handle) Minor() uint16 { return uint16(h) }

// String is h as tc prints it: "root", "ingress", "1:" or "1:2" (hex).
func (h Handle) String() string {
	switch {
	case h == HandleRoot:
		return "root"
	case h == HandleIngress:
		return "ingress"
	case h.Minor() == 0:
		return fmt.Sprintf("%x:", h.Major())
	}
	return fmt.Sprintf("%x:%x", h.Major(), h.Minor())
}

// LeafKind is the qdisc under each HTB class. The zero value is invalid.
type LeafKind uint8

// Leaf qdiscs, best first: Probe picks the first the kernel offers.
const (
	leafInvalid LeafKind = iota
	LeafFQCodel
	LeafSFQ
	LeafPfifo
)

var leafNames = [...]string{"", "fq_codel", "sfq", "pfifo"}

// String is the qdisc kind.
func (k LeafKind) String() string {
	if k > leafInvalid && int(k) < len(leafNames) {
		return leafNames[k]
	}
	return fmt.Sprintf("LeafKind(%d)", k)
}

// Valid reports whether k is one of the defined leaf kinds.
func (k LeafKind) Valid() bool { return k > leafInvalid && int(k) < len(leafNames) }

// Op is what a Step does to its object.
type Op uint8

// Operations. The zero value is invalid.
const (
	opInvalid Op = iota
	// OpAdd creates the object; the executor accepts an existing object of
	// the same identity and kind and changes it to match (idempotence).
	OpAdd
	// OpChange changes an existing object in place (tc "change").
	OpChange
	// OpDelete removes the object; a missing object is not an error.
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpAdd:
		return "add"
	case OpChange:
		return "change"
	case OpDelete:
		return "del"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Object is a Link, Qdisc, Class or Filter.
type Object interface {
	// Device is the device the object lives on (a Link's own name).
	Device() string
	// key identifies the object on its device, for the fake kernel of the
	// tests and for rollback.
	key() string
	// render is the object in tc's syntax; short is its identity only.
	render(short bool) string
}

// Link is a device shaping creates: the IFB an ingress is redirected to.
type Link struct {
	Name string
	Kind string // "ifb"
}

// Qdisc is a queueing discipline.
type Qdisc struct {
	Dev    string
	Parent Handle // HandleRoot, HandleIngress or a class
	Handle Handle
	Kind   string // "htb", "ingress" or a LeafKind
	// Default is the minor of HTB's default class.
	Default uint16
	// Limit is the packet limit of a pfifo or fq_codel leaf (0: the
	// kernel's default).
	Limit uint32
}

// Class is an HTB class.
type Class struct {
	Dev    string
	Parent Handle
	ID     Handle
	// Rate and Ceil are in bytes per second.
	Rate, Ceil uint64
	// Burst and Cburst are the rate and ceil buckets in bytes.
	Burst, Cburst uint32
	Quantum       uint32
}

// Filter is a u32 filter, protocol all, matching Keys. It either
// classifies into FlowID or, with Redirect set, hands the packet to that
// device's egress (action mirred egress redirect).
type Filter struct {
	Dev      string
	Parent   Handle
	Prio     uint16
	Handle   uint32 // u32 handle: hash table 12 bits, bucket 8, node 12
	Keys     []Key
	FlowID   Handle
	Redirect string
}

// Key is one 32-bit u32 match: the 4 bytes at Off from the network header,
// read as a big-endian number, masked by Mask, must equal Val.
type Key struct {
	Val, Mask uint32
	Off       int32
}

func (l Link) Device() string   { return l.Name }
func (q Qdisc) Device() string  { return q.Dev }
func (c Class) Device() string  { return c.Dev }
func (f Filter) Device() string { return f.Dev }

func (l Link) key() string  { return "link " + l.Name }
func (q Qdisc) key() string { return "qdisc " + q.Dev + " " + q.Handle.String() }
func (c Class) key() string { return "class " + c.Dev + " " + c.ID.String() }
func (f Filter) key() string {
	return fmt.Sprintf("filter %s %s %d %s", f.Dev, f.Parent, f.Prio, u32Handle(f.Handle))
}

func (l Link) render(short bool) string {
	if short {
		return "link " + l.Name
	}
	return "link " + l.Name + " type " + l.Kind
}

func (q Qdisc) render(short bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "qdisc dev %s ", q.Dev)
	switch q.Parent {
	case HandleRoot:
		b.WriteString("root")
	case HandleIngress:
		b.WriteString("ingress")
		return b.String()
	default:
		fmt.Fprintf(&b, "parent %s", q.Parent)
	}
	fmt.Fprintf(&b, " handle %s", q.Handle)
	if short {
		return b.String()
	}
	b.WriteString(" " + q.Kind)
	switch q.Kind {
	case "htb":
		fmt.Fprintf(&b, " default %x", q.Default)
	case "sfq":
		b.WriteString(" perturb 10")
	}
	if q.Limit != 0 {
		fmt.Fprintf(&b, " limit %d", q.Limit)
	}
	return b.String()
}

func (c Class) render(short bool) string {
	s := fmt.Sprintf("class dev %s parent %s classid %s", c.Dev, c.Parent, c.ID)
	if short {
		return s
	}
	return fmt.Sprintf("%s htb rate %s ceil %s burst %db cburst %db quantum %d",
		s, rateString(c.Rate), rateString(c.Ceil), c.Burst, c.Cburst, c.Quantum)
}

func (f Filter) render(short bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "filter dev %s parent %s protocol all prio %d handle %s u32", f.Dev, f.Parent, f.Prio, u32Handle(f.Handle))
	if short {
		return b.String()
	}
	for _, k := range f.Keys {
		fmt.Fprintf(&b, " match u32 0x%08x 0x%08x at %d", k.Val, k.Mask, k.Off)
	}
	if f.FlowID != 0 {
		fmt.Fprintf(&b, " flowid %s", f.FlowID)
	}
	if f.Redirect != "" {
		fmt.Fprintf(&b, " action mirred egress redirect dev %s", f.Redirect)
	}
	return b.String()
}

// rateString prints bytes/s in tc's syntax, where "kbps" is 1000 bytes/s.
func rateString(bps uint64) string {
	if bps%1000 == 0 {
		return fmt.Sprintf("%dkbps", bps/1000)
	}
	return fmt.Sprintf("%dbps", bps)
}

// u32Handle prints a u32 handle as tc does, "800::3" (hash table, bucket,
// node; a zero bucket left out).
func u32Handle(h uint32) string {
	if b := (h >> 12) & 0xff; b != 0 {
		return fmt.Sprintf("%x:%x:%x", h>>20, b, h&0xfff)
	}
	return fmt.Sprintf("%x::%x", h>>20, h&0xfff)
}

// Step is one operation of a Plan.
type Step struct {
	Op  Op
	Obj Object
}

func (s Step) String() string { return s.Op.String() + " " + s.Obj.render(s.Op == OpDelete) }

// Plan is an ordered list of steps. Plans that set a device up (PlanPort,
// PlanNetwork) hold only OpAdd steps, parents before children, and are
// undone in reverse; floor plans mix operations.
type Plan []Step

// String renders one step per line, in tc's syntax.
func (p Plan) String() string {
	var b strings.Builder
	for _, s := range p {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// IFBName is the IFB device that shapes the ingress of the device with
// this ifindex: "vnifb" and the index, at most 15 characters.
func IFBName(ifindex int) string { return fmt.Sprintf("vnifb%d", ifindex) }

// Class and qdisc numbers of the trees shaping builds.
const (
	rootMajor      = 1 // root HTB qdisc 1:
	leafMajor      = 2 // leaf qdisc 2: under the default class
	classTop       = 1 // 1:1, the device's (or network's) cap
	classNoFloor   = 2 // 1:2, network traffic without a floor
	prioRedirect   = 1
	prioFloor      = 2
	u32RedirectHdl = 0x800<<20 | 0x800 // 800::800
)

// tree is an HTB root with one class capping everything at r and a leaf.
func tree(dev string, r *conf.Rate, leaf LeafKind) Plan {
	rate, ceil := rates(r)
	burst := burstOf(r, rate)
	c := Class{Dev: dev, Parent: NewHandle(rootMajor, 0), ID: NewHandle(rootMajor, classTop),
		Rate: rate, Ceil: ceil, Burst: burst, Cburst: cburstOf(r, ceil, burst), Quantum: Quantum(r.Average)}
	return Plan{
		{OpAdd, Qdisc{Dev: dev, Parent: HandleRoot, Handle: NewHandle(rootMajor, 0), Kind: "htb", Default: classTop}},
		{OpAdd, c},
		{OpAdd, leafQdisc(dev, c.ID, NewHandle(leafMajor, 0), leaf, ceil)},
	}
}

// rates are the HTB rate and ceil (bytes/s) of r: average, and peak or
// else the average.
func rates(r *conf.Rate) (rate, ceil uint64) {
	rate = BytesPerSecond(r.Average)
	ceil = rate
	if r.Peak != 0 {
		ceil = BytesPerSecond(r.Peak)
	}
	return rate, ceil
}

// burstOf is the configured burst in bytes, or the default for rate.
func burstOf(r *conf.Rate, rate uint64) uint32 {
	if r != nil && r.Burst != 0 {
		return BurstBytes(r.Burst)
	}
	return defaultBurst(rate)
}

// cburstOf is the ceil bucket: the default for ceil. Without a peak the
// ceil equals the rate and a configured burst serves both buckets, as a
// smaller ceil bucket would cut it.
func cburstOf(r *conf.Rate, ceil uint64, burst uint32) uint32 {
	if r != nil && r.Peak == 0 {
		return max(burst, defaultBurst(ceil))
	}
	return defaultBurst(ceil)
}

// leafQdisc is the leaf under a class that sends at most ceil bytes/s.
func leafQdisc(dev string, parent, handle Handle, leaf LeafKind, ceil uint64) Qdisc {
	q := Qdisc{Dev: dev, Parent: parent, Handle: handle, Kind: leaf.String()}
	if leaf == LeafPfifo {
		q.Limit = fifoLimit(ceil)
	}
	return q
}

// redirect shapes what dev receives on the IFB ifb: the IFB with its tree,
// then dev's ingress qdisc and the filter that redirects every packet.
func redirect(dev, ifb string, r *conf.Rate, leaf LeafKind) Plan {
	p := Plan{{OpAdd, Link{Name: ifb, Kind: "ifb"}}}
	p = append(p, tree(ifb, r, leaf)...)
	return append(p,
		Step{OpAdd, Qdisc{Dev: dev, Parent: HandleIngress, Handle: ingressQdisc, Kind: "ingress"}},
		Step{OpAdd, Filter{Dev: dev, Parent: ingressQdisc, Prio: prioRedirect, Handle: u32RedirectHdl,
			Keys: []Key{{}}, Redirect: ifb}})
}

func checkArgs(dev string, ifindex int, bw *conf.Bandwidth, leaf LeafKind) error {
	if dev == "" {
		return fmt.Errorf("shaping: no device name")
	}
	if ifindex <= 0 {
		return fmt.Errorf("shaping: %s: invalid ifindex %d", dev, ifindex)
	}
	if !leaf.Valid() {
		return fmt.Errorf("shaping: %s: invalid leaf qdisc %s", dev, leaf)
	}
	if err := Validate(bw); err != nil {
		return fmt.Errorf("shaping: %s: %w", dev, err)
	}
	return nil
}

// PlanPort is the tc configuration of a port device (a tap or veth whose
// other end is the guest) with bandwidth bw, the guest's view:
//
//   - inbound (to the guest) is shaped on the device's egress: HTB root 1:
//     (default 1), class 1:1 with rate average, ceil peak, burst, and the
//     leaf qdisc 2:;
//   - outbound (from the guest) arrives on the device's ingress, which a u32
//     match-all filter redirects (mirred) to the IFB IFBName(ifindex), where
//     the same HTB tree shapes it, so peak and burst hold for outbound too.
//
// A floor is not applied here (see PlanPlug). A nil or empty bw, or one
// with only a floor, plans nothing.
func PlanPort(dev string, ifindex int, bw *conf.Bandwidth, leaf LeafKind) (Plan, error) {
	if err := checkArgs(dev, ifindex, bw, leaf); err != nil {
		return nil, err
	}
	var p Plan
	if bw == nil {
		return p, nil
	}
	if shaped(bw.Inbound) {
		p = append(p, tree(dev, bw.Inbound, leaf)...)
	}
	if shaped(bw.Outbound) {
		p = append(p, redirect(dev, IFBName(ifindex), bw.Outbound, leaf)...)
	}
	return p, nil
}

// PlanNetwork is the tc configuration of a network's bridge with bandwidth
// bw (libvirt's hierarchical layout). Inbound, on the bridge's egress: HTB
// root 1: default 2; class 1:1 capping the network (rate average, ceil
// peak or average); class 1:2 under it for traffic without a floor; its
// leaf qdisc 2:. Floors add classes under 1:1 (PlanPlug). floorSum (kB/s)
// is the sum of the floors already plugged, which 1:2's rate leaves out
// (see NoFloorRate). Outbound is redirected from the bridge's ingress to
// an IFB as for a port.
func PlanNetwork(bridge string, ifindex int, bw *conf.Bandwidth, floorSum uint64, leaf LeafKind) (Plan, error) {
	if err := checkArgs(bridge, ifindex, bw, leaf); err != nil {
		return nil, err
	}
	var p Plan
	if bw != nil && shaped(bw.Inbound) {
		in := bw.Inbound
		rate, ceil := rates(in)
		burst := burstOf(in, rate)
		top := Class{Dev: bridge, Parent: NewHandle(rootMajor, 0), ID: NewHandle(rootMajor, classTop),
			Rate: rate, Ceil: ceil, Burst: burst, Cburst: cburstOf(in, ceil, burst), Quantum: Quantum(in.Average)}
		nf, err := noFloorClass(bridge, bw, floorSum)
		if err != nil {
			return nil, err
		}
		p = append(p,
			Step{OpAdd, Qdisc{Dev: bridge, Parent: HandleRoot, Handle: NewHandle(rootMajor, 0), Kind: "htb", Default: classNoFloor}},
			Step{OpAdd, top},
			Step{OpAdd, nf},
			Step{OpAdd, leafQdisc(bridge, nf.ID, NewHandle(leafMajor, 0), leaf, nf.Ceil)})
	} else if floorSum != 0 {
		return nil, fmt.Errorf("shaping: %s: floors of %d kB/s are plugged but the network has no inbound average", bridge, floorSum)
	}
	if bw != nil && shaped(bw.Outbound) {
		p = append(p, redirect(bridge, IFBName(ifindex), bw.Outbound, leaf)...)
	}
	return p, nil
}

// NoFloorRate is the rate (kB/s) of class 1:2, the network's traffic
// without a floor, when floors summing to floorSum are plugged: what the
// floors leave of base (the inbound peak, or the average without one:
// libvirt's new_rate), but never above the average, so that a network
// with a peak still holds its average for that traffic (libvirt starts
// 1:2 at the average and re-rates it to peak − floorSum on the first
// plug), and at least 1 (HTB refuses a zero rate).
func NoFloorRate(netIn *conf.Rate, floorSum uint64) uint64 {
	base := netIn.Average
	if netIn.Peak != 0 {
		base = netIn.Peak
	}
	var rest uint64
	if floorSum < base {
		rest = base - floorSum
	}
	return max(1, min(netIn.Average, rest))
}

// noFloorClass is class 1:2 of the bridge with floors summing to floorSum.
func noFloorClass(bridge string, netBW *conf.Bandwidth, floorSum uint64) (Class, error) {
	if netBW == nil || !shaped(netBW.Inbound) {
		return Class{}, fmt.Errorf("shaping: %s: the network has no inbound average, required by a floor", bridge)
	}
	in := netBW.Inbound
	_, ceil := rates(in)
	rate := BytesPerSecond(NoFloorRate(in, floorSum))
	burst := burstOf(in, rate)
	return Class{Dev: bridge, Parent: NewHandle(rootMajor, classTop), ID: NewHandle(rootMajor, classNoFloor),
		Rate: rate, Ceil: ceil, Burst: burst, Cburst: cburstOf(in, ceil, burst), Quantum: Quantum(in.Average)}, nil
}

// Floor is a port's guaranteed share of its network's inbound bandwidth.
type Floor struct {
	// ClassID is the minor of the port's class on the bridge (ClassIDs).
	ClassID uint16
	// MAC is the port's (the guest's) address: traffic to it is the port's.
	MAC net.HardwareAddr
	// Floor is the port's inbound floor in kB/s.
	Floor uint64
	// Average is the port's inbound average in kB/s (0: none); libvirt
	// computes the class quantum from it.
	Average uint64
}

// PortFloor is the Floor of port p in class id (p's inbound floor, average
// and MAC).
func PortFloor(p *conf.Port, id uint16) Floor {
	f := Floor{ClassID: id}
	if p == nil {
		return f
	}
	f.MAC = p.MAC
	if p.Bandwidth != nil && p.Bandwidth.Inbound != nil {
		f.Floor = p.Bandwidth.Inbound.Floor
		f.Average = p.Bandwidth.Inbound.Average
	}
	return f
}

func checkFloor(bridge string, netBW *conf.Bandwidth, f Floor, needRate bool) error {
	if bridge == "" {
		return fmt.Errorf("shaping: no bridge name")
	}
	if f.ClassID <= classNoFloor || f.ClassID > MaxClassID {
		return fmt.Errorf("shaping: %s: floor class id %d out of range %d-%d", bridge, f.ClassID, classNoFloor+1, MaxClassID)
	}
	if netBW == nil || !shaped(netBW.Inbound) {
		return fmt.Errorf("shaping: %s: the network has no inbound average, required by a floor", bridge)
	}
	if !needRate {
		return nil
	}
	if len(f.MAC) != 6 {
		return fmt.Errorf("shaping: %s: class 1:%x: malformed MAC address %q", bridge, f.ClassID, f.MAC.String())
	}
	if f.Floor == 0 || f.Floor > MaxRate {
		return fmt.Errorf("shaping: %s: <inbound floor='%d'>: must be 1 to %d kB/s: %w", bridge, f.Floor, uint64(MaxRate), ErrInvalid)
	}
	return nil
}

// floorClass is the class of f under 1:1: rate the floor, ceil the
// network's peak (or average).
func floorClass(bridge string, netBW *conf.Bandwidth, f Floor) Class {
	_, ceil := rates(netBW.Inbound)
	rate := BytesPerSecond(f.Floor)
	return Class{Dev: bridge, Parent: NewHandle(rootMajor, classTop), ID: NewHandle(rootMajor, f.ClassID),
		Rate: rate, Ceil: ceil, Burst: defaultBurst(rate), Cburst: defaultBurst(ceil), Quantum: Quantum(f.Average)}
}

// floorFilter classifies every frame (any protocol: IPv4, IPv6, ARP…) whose
// destination MAC is f.MAC into f's class. The keys read the Ethernet
// header before the network header: bytes 0-1 of the MAC in the low half
// of the word at -16, bytes 2-5 at -12.
func floorFilter(bridge string, f Floor) Filter {
	m := f.MAC
	return Filter{Dev: bridge, Parent: NewHandle(rootMajor, 0), Prio: prioFloor, Handle: 0x800<<20 | uint32(f.ClassID),
		Keys: []Key{
			{Val: uint32(m[0])<<8 | uint32(m[1]), Mask: 0x0000ffff, Off: -16},
			{Val: binary.BigEndian.Uint32(m[2:6]), Mask: 0xffffffff, Off: -12},
		},
		FlowID: NewHandle(rootMajor, f.ClassID)}
}

// PlanPlug plugs floor f into the bridge of a network with bandwidth
// netBW, where the other ports' floors sum to others (kB/s): f's class
// under 1:1 with its leaf qdisc <id>:, the filter that classifies traffic
// to f.MAC into it, and 1:2 re-rated to what all floors leave. Admission
// (ports.CheckFloor) is the caller's.
func PlanPlug(bridge string, netBW *conf.Bandwidth, f Floor, others uint64, leaf LeafKind) (Plan, error) {
	return planFloor(OpAdd, bridge, netBW, f, others, leaf)
}

// PlanUnplug removes floor f (only its ClassID is used) from the bridge
// and re-rates 1:2 to what the remaining floors, summing to others, leave.
func PlanUnplug(bridge string, netBW *conf.Bandwidth, f Floor, others uint64) (Plan, error) {
	if err := checkFloor(bridge, netBW, f, false); err != nil {
		return nil, err
	}
	nf, err := noFloorClass(bridge, netBW, others)
	if err != nil {
		return nil, err
	}
	id := NewHandle(rootMajor, f.ClassID)
	return Plan{
		{OpDelete, Filter{Dev: bridge, Parent: NewHandle(rootMajor, 0), Prio: prioFloor, Handle: 0x800<<20 | uint32(f.ClassID)}},
		{OpDelete, Qdisc{Dev: bridge, Parent: id, Handle: NewHandle(f.ClassID, 0)}},
		{OpDelete, Class{Dev: bridge, Parent: NewHandle(rootMajor, classTop), ID: id}},
		{OpChange, nf},
	}, nil
}

// PlanUpdate changes plugged floor f in place: its class to the new floor
// (and the port's new average), its leaf, its filter to the (possibly new)
// MAC, and 1:2 to what all floors, summing to others plus f's, leave.
// Applied to a bridge where parts of f are missing, it restores them.
func PlanUpdate(bridge string, netBW *conf.Bandwidth, f Floor, others uint64, leaf LeafKind) (Plan, error) {
	return planFloor(OpChange, bridge, netBW, f, others, leaf)
}

// planFloor is floor f's class, leaf and filter, and 1:2 re-rated; op says
// whether they are added or changed in place.
func planFloor(op Op, bridge string, netBW *conf.Bandwidth, f Floor, others uint64, leaf LeafKind) (Plan, error) {
	if err := checkFloor(bridge, netBW, f, true); err != nil {
		return nil, err
	}
	if !leaf.Valid() {
		return nil, fmt.Errorf("shaping: %s: invalid leaf qdisc %s", bridge, leaf)
	}
	c := floorClass(bridge, netBW, f)
	nf, err := noFloorClass(bridge, netBW, others+f.Floor)
	if err != nil {
		return nil, err
	}
	return Plan{
		{op, c},
		{op, leafQdisc(bridge, c.ID, NewHandle(f.ClassID, 0), leaf, c.Ceil)},
		{op, floorFilter(bridge, f)},
		{OpChange, nf},
	}, nil
}
