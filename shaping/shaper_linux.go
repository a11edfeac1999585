package shaping

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	tc "github.com/florianl/go-tc"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/ports"
)

// Shaper applies shaping plans to the devices of one network namespace
// over netlink: tc objects through go-tc, IFB devices through
// vishvananda/netlink. It never runs tc or ip. Its methods are safe for
// concurrent use; they are serialised on one lock, as the tc socket
// carries one request at a time.
type Shaper struct {
	mu    sync.Mutex
	tc    *tc.Tc
	nl    *netlink.Handle
	log   *slog.Logger
	clock clock
	leaf  LeafKind // set by the first Probe
}

// New returns a Shaper for the network namespace open as nsFD, or for the
// calling thread's namespace when nsFD is -1. The descriptor is only used
// to open the two netlink sockets and stays the caller's. A nil log
// discards the Shaper's few messages (the leaf qdisc it degrades to,
// rollback failures).
func New(nsFD int, log *slog.Logger) (*Shaper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := &tc.Config{}
	var (
		nl  *netlink.Handle
		err error
	)
	if nsFD >= 0 {
		cfg.NetNS = nsFD
		nl, err = netlink.NewHandleAt(netns.NsHandle(nsFD))
	} else {
		nl, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("shaping: open netlink: %w", err)
	}
	t, err := tc.Open(cfg)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("shaping: open tc netlink: %w", err)
	}
	c := defaultClock
	if b, err := os.ReadFile("/proc/net/psched"); err == nil {
		if pc, err := parsePsched(string(b)); err == nil {
			c = pc
		}
	}
	return &Shaper{tc: t, nl: nl, log: log.With("component", "shaping"), clock: c}, nil
}

// Close releases the netlink sockets.
func (s *Shaper) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nl.Close()
	return s.tc.Close()
}

// Probe reports the leaf qdisc shaping uses: the first of fq_codel, sfq and
// pfifo the kernel offers, found once (on a throw-away IFB device) and
// remembered. When it has to degrade it logs which kinds are missing.
func (s *Shaper) Probe(ctx context.Context) (LeafKind, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probe(ctx)
}

func (s *Shaper) probe(ctx context.Context) (LeafKind, error) {
	if s.leaf.Valid() {
		return s.leaf, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := probePrefix + hex.EncodeToString(b)
	if err := s.nl.LinkAdd(&netlink.Ifb{LinkAttrs: ifbAttrs(name)}); err != nil {
		return 0, fmt.Errorf("shaping: probe: create IFB %s (outbound shaping needs the ifb driver): %w", name, err)
	}
	defer func() {
		if l, err := s.nl.LinkByName(name); err == nil {
			s.nl.LinkDel(l)
		}
	}()
	l, err := s.nl.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("shaping: probe: %s: %w", name, err)
	}
	var missing []string
	var errs []error
	for _, k := range []LeafKind{LeafFQCodel, LeafSFQ, LeafPfifo} {
		q := leafQdisc(name, HandleRoot, NewHandle(leafMajor, 0), k, 1e6)
		obj := qdiscObject(q, uint32(l.Attrs().Index))
		if err := s.tc.Qdisc().Add(&obj); err != nil {
			missing = append(missing, k.String())
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		s.tc.Qdisc().Delete(&obj)
		s.leaf = k
		if len(missing) > 0 {
			s.log.Warn("leaf qdisc degraded: this kernel lacks "+strings.Join(missing, " and ")+
				", so shaped classes queue in a plain FIFO without per-flow fairness", "leaf", k.String())
		} else {
			s.log.Debug("leaf qdisc", "leaf", k.String())
		}
		return k, nil
	}
	return 0, fmt.Errorf("shaping: probe: no usable leaf qdisc: %w", errors.Join(errs...))
}

// ApplyPort makes the shaping of port device dev match bw (see PlanPort).
// It is idempotent and changes an existing configuration in place: classes
// keep their handles, the IFB its ifindex, so traffic is never unshaped
// in between. A direction bw does not shape is cleared; a nil or empty bw
// clears everything, the IFB included. On failure what this call created
// is removed again and changed classes get their old rates back.
func (s *Shaper) ApplyPort(ctx context.Context, dev string, bw *conf.Bandwidth) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyDevice(ctx, dev, bw, false, 0)
}

// ClearPort removes all shaping of port device dev, its IFB included. A
// device that no longer exists has nothing left but maybe its IFB: Sweep
// removes those.
func (s *Shaper) ClearPort(ctx context.Context, dev string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clearDevice(ctx, dev)
}

// ApplyNetwork makes the shaping of the network bridge match bw (see
// PlanNetwork), idempotently and in place like ApplyPort. floorSum (kB/s)
// is the sum of the floors plugged on the bridge: class 1:2 gets what they
// leave, and their classes are kept. Without an inbound average the root
// HTB goes, and with it every floor class.
func (s *Shaper) ApplyNetwork(ctx context.Context, bridge string, bw *conf.Bandwidth, floorSum uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyDevice(ctx, bridge, bw, true, floorSum)
}

// ClearNetwork removes all shaping of the bridge: the root HTB with every
// floor class and filter, the ingress redirect and the IFB.
func (s *Shaper) ClearNetwork(ctx context.Context, bridge string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clearDevice(ctx, bridge)
}

func (s *Shaper) clearDevice(ctx context.Context, dev string) error {
	l, err := s.nl.LinkByName(dev)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shaping: %s: %w", dev, err)
	}
	return s.removeUnwanted(ctx, dev, l.Attrs().Index, nil)
}

func (s *Shaper) applyDevice(ctx context.Context, dev string, bw *conf.Bandwidth, network bool, floorSum uint64) (err error) {
	if err := Validate(bw); err != nil {
		return fmt.Errorf("shaping: %s: %w", dev, err)
	}
	l, err := s.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("shaping: %s: %w", dev, err)
	}
	ifindex := l.Attrs().Index
	var plan Plan
	if bw != nil && (shaped(bw.Inbound) || shaped(bw.Outbound)) {
		leaf, err := s.probe(ctx)
		if err != nil {
			return err
		}
		if network {
			plan, err = PlanNetwork(dev, ifindex, bw, floorSum, leaf)
		} else {
			plan, err = PlanPort(dev, ifindex, bw, leaf)
		}
		if err != nil {
			return err
		}
	}
	var u undo
	defer func() {
		if err != nil {
			u.run(s.log, dev)
		}
	}()
	if err := s.run(ctx, plan, &u); err != nil {
		return err
	}
	return s.removeUnwanted(ctx, dev, ifindex, plan)
}

// removeUnwanted removes the shaping objects of dev that plan does not
// have: the root HTB, the ingress redirect, the IFB.
func (s *Shaper) removeUnwanted(ctx context.Context, dev string, ifindex int, plan Plan) error {
	var wantRoot, wantIngress bool
	for _, st := range plan {
		if q, ok := st.Obj.(Qdisc); ok && q.Dev == dev {
			wantRoot = wantRoot || q.Parent == HandleRoot
			wantIngress = wantIngress || q.Parent == HandleIngress
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	qs, err := s.qdiscs(ifindex)
	if err != nil {
		return fmt.Errorf("shaping: %s: %w", dev, err)
	}
	var errs []error
	for _, q := range qs {
		switch {
		case q.Parent == tc.HandleRoot && !wantRoot && q.Kind == "htb" && q.Handle == uint32(NewHandle(rootMajor, 0)):
			if err := s.deleteQdisc(q); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("shaping: %s: delete root qdisc: %w", dev, err))
			}
		case q.Parent == tc.HandleIngress && !wantIngress:
			if q.Kind == "ingress" {
				if err := s.deleteQdisc(q); err != nil && !isGone(err) {
					errs = append(errs, fmt.Errorf("shaping: %s: delete ingress qdisc: %w", dev, err))
				}
			} else { // clsact: someone else's; take only our filter
				f := Filter{Dev: dev, Parent: ingressQdisc, Prio: prioRedirect, Handle: u32RedirectHdl}
				if err := s.deleteFilter(f, ifindex, true); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	wantIFB := false
	for _, st := range plan {
		if _, ok := st.Obj.(Link); ok {
			wantIFB = true
		}
	}
	if !wantIFB {
		if err := s.deleteIFB(IFBName(ifindex)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Shaper) deleteIFB(name string) error {
	l, err := s.nl.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shaping: IFB %s: %w", name, err)
	}
	if l.Type() != "ifb" {
		return nil // not ours
	}
	if err := s.nl.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("shaping: delete IFB %s: %w", name, err)
	}
	return nil
}

// Sweep deletes the IFB devices (named by IFBName) whose device is gone,
// left behind when a port device disappeared before ClearPort, and the
// IFBs of a Probe that was interrupted.
func (s *Shaper) Sweep(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	links, err := s.nl.LinkList()
	if err != nil {
		return fmt.Errorf("shaping: sweep: %w", err)
	}
	present := map[int]bool{}
	for _, l := range links {
		present[l.Attrs().Index] = true
	}
	var errs []error
	for _, l := range links {
		if l.Type() != "ifb" {
			continue
		}
		name := l.Attrs().Name
		if idx, ok := strings.CutPrefix(name, "vnifb"); ok {
			if n, err := strconv.Atoi(idx); err != nil || present[n] {
				continue
			}
		} else if !strings.HasPrefix(name, probePrefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.nl.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("shaping: sweep: delete IFB %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// PlugFloor admits port p's inbound floor on network n (ports.CheckFloor,
// with others the sum of the floors of n's other plugged ports, kB/s),
// takes a class id from ids and plugs the floor into n's bridge (see
// PlanPlug). It returns the class id, which the daemon records in
// p.Bandwidth.ClassID and persists with ids; a port without a floor gets 0
// and nothing happens. On failure the id is released and what was created
// removed.
func (s *Shaper) PlugFloor(ctx context.Context, bridge string, n *conf.Network, p *conf.Port, others uint64, ids *ClassIDs) (classID uint16, err error) {
	if err := ports.CheckFloor(n, p, others); err != nil {
		return 0, fmt.Errorf("shaping: %s: %w", bridge, err)
	}
	if ports.InboundFloor(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	leaf, err := s.probe(ctx)
	if err != nil {
		return 0, err
	}
	id, err := ids.Allocate()
	if err != nil {
		return 0, fmt.Errorf("shaping: %s: %w", bridge, err)
	}
	plan, err := PlanPlug(bridge, n.Bandwidth, PortFloor(p, id), others, leaf)
	if err != nil {
		ids.Release(id)
		return 0, err
	}
	var u undo
	if err := s.run(ctx, plan, &u); err != nil {
		u.run(s.log, bridge)
		ids.Release(id)
		return 0, err
	}
	return id, nil
}

// UnplugFloor removes floor class classID from n's bridge and re-rates
// class 1:2 to what the other floors (summing to others, kB/s) leave. As in
// libvirt, objects already gone are not errors; the id is released in ids
// in any case.
func (s *Shaper) UnplugFloor(ctx context.Context, bridge string, n *conf.Network, classID uint16, others uint64, ids *ClassIDs) error {
	defer ids.Release(classID)
	if n == nil {
		return fmt.Errorf("shaping: %s: no network definition", bridge)
	}
	plan, err := PlanUnplug(bridge, n.Bandwidth, Floor{ClassID: classID}, others)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, st := range plan {
		var u undo
		if err := s.step(ctx, st, &u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// UpdateFloor changes port p's floor live (net-port-set-bandwidth) after
// admitting it against n like PlugFloor (others: the other ports' floors).
// p.Bandwidth.ClassID is the port's current class (0: none). With a class
// and a floor the class, its filter (for a new MAC) and 1:2 change in
// place, which also restores parts that went missing; a new floor is
// plugged; a removed one unplugged. It returns the port's class id now.
func (s *Shaper) UpdateFloor(ctx context.Context, bridge string, n *conf.Network, p *conf.Port, others uint64, ids *ClassIDs) (uint16, error) {
	if err := ports.CheckFloor(n, p, others); err != nil {
		return 0, fmt.Errorf("shaping: %s: %w", bridge, err)
	}
	var cur uint16
	if p.Bandwidth != nil {
		if p.Bandwidth.ClassID > MaxClassID {
			return 0, fmt.Errorf("shaping: %s: class id %d out of range", bridge, p.Bandwidth.ClassID)
		}
		cur = uint16(p.Bandwidth.ClassID)
	}
	floor := ports.InboundFloor(p)
	switch {
	case cur == 0 && floor == 0:
		return 0, nil
	case cur == 0:
		return s.PlugFloor(ctx, bridge, n, p, others, ids)
	case floor == 0:
		return 0, s.UnplugFloor(ctx, bridge, n, cur, others, ids)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	leaf, err := s.probe(ctx)
	if err != nil {
		return 0, err
	}
	plan, err := PlanUpdate(bridge, n.Bandwidth, PortFloor(p, cur), others, leaf)
	if err != nil {
		return 0, err
	}
	if !ids.InUse(cur) {
		if err := ids.Reserve(cur); err != nil {
			return 0, fmt.Errorf("shaping: %s: %w", bridge, err)
		}
	}
	var u undo
	if err := s.run(ctx, plan, &u); err != nil {
		u.run(s.log, bridge)
		return 0, err
	}
	return cur, nil
}

// undo collects the inverse of what a call did, run in reverse on failure.
type undo []func() error

func (u *undo) push(f func() error) { *u = append(*u, f) }

func (u undo) run(log *slog.Logger, dev string) {
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](); err != nil && !isGone(err) {
			log.Warn("rollback step failed", "device", dev, "err", err)
		}
	}
}

// run executes the steps of p in order.
func (s *Shaper) run(ctx context.Context, p Plan, u *undo) error {
	for _, st := range p {
		if err := s.step(ctx, st, u); err != nil {
			return err
		}
	}
	return nil
}

func (s *Shaper) ifindex(dev string) (uint32, error) {
	l, err := s.nl.LinkByName(dev)
	if err != nil {
		return 0, fmt.Errorf("shaping: %s: %w", dev, err)
	}
	return uint32(l.Attrs().Index), nil
}

// step executes one step. OpAdd and OpChange both make the object match
// (created when missing, changed in place when present); OpDelete accepts
// an object that is already gone.
func (s *Shaper) step(ctx context.Context, st Step, u *undo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l, ok := st.Obj.(Link); ok {
		if st.Op == OpDelete {
			return s.deleteIFB(l.Name)
		}
		return s.ensureIFB(l.Name, u)
	}
	idx, err := s.ifindex(st.Obj.Device())
	if err != nil {
		return err
	}
	switch o := st.Obj.(type) {
	case Qdisc:
		if st.Op == OpDelete {
			qs, err := s.qdiscs(int(idx))
			if err != nil {
				return fmt.Errorf("shaping: %s: %w", o.Dev, err)
			}
			for _, q := range qs {
				if q.Parent == uint32(o.Parent) && q.Handle == uint32(o.Handle) {
					if err := s.deleteQdisc(q); err != nil && !isGone(err) {
						return fmt.Errorf("shaping: delete %s: %w", o.render(true), err)
					}
				}
			}
			return nil
		}
		return s.ensureQdisc(o, idx, u)
	case Class:
		if st.Op == OpDelete {
			obj := tc.Object{Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx, Handle: uint32(o.ID), Parent: uint32(o.Parent)},
				Attribute: tc.Attribute{Kind: "htb", Htb: &tc.Htb{}}} // go-tc wants options even to delete
			if err := s.tc.Class().Delete(&obj); err != nil && !isGone(err) {
				return fmt.Errorf("shaping: %s: %w", o.render(true), err)
			}
			return nil
		}
		return s.ensureClass(o, idx, u)
	case Filter:
		if st.Op == OpDelete {
			return s.deleteFilter(o, int(idx), false)
		}
		return s.ensureFilter(o, idx, u)
	}
	return fmt.Errorf("shaping: unknown object %T", st.Obj)
}

func (s *Shaper) ensureIFB(name string, u *undo) error {
	l, err := s.nl.LinkByName(name)
	switch {
	case isNotFound(err):
		if err := s.nl.LinkAdd(&netlink.Ifb{LinkAttrs: ifbAttrs(name)}); err != nil {
			return fmt.Errorf("shaping: create IFB %s: %w", name, err)
		}
		u.push(func() error { return s.deleteIFB(name) })
		if l, err = s.nl.LinkByName(name); err != nil {
			return fmt.Errorf("shaping: IFB %s: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("shaping: IFB %s: %w", name, err)
	case l.Type() != "ifb":
		return fmt.Errorf("shaping: %s exists and is a %s device, not an IFB", name, l.Type())
	}
	if l.Attrs().Flags&netFlagUp == 0 {
		if err := s.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("shaping: set IFB %s up: %w", name, err)
		}
	}
	return nil
}

const netFlagUp = 1 // net.FlagUp

// probePrefix names Probe's throw-away IFBs (with 8 hex digits: 15
// characters).
const probePrefix = "vnprobe"

// qdiscs are the qdiscs of the device with this ifindex.
func (s *Shaper) qdiscs(ifindex int) ([]tc.Object, error) {
	all, err := s.tc.Qdisc().Get()
	if err != nil {
		return nil, fmt.Errorf("list qdiscs: %w", err)
	}
	var out []tc.Object
	for _, q := range all {
		if int(q.Ifindex) == ifindex {
			out = append(out, q)
		}
	}
	return out, nil
}

func (s *Shaper) ensureQdisc(q Qdisc, idx uint32, u *undo) error {
	qs, err := s.qdiscs(int(idx))
	if err != nil {
		return fmt.Errorf("shaping: %s: %w", q.Dev, err)
	}
	var cur *tc.Object
	for i := range qs {
		if qs[i].Parent == uint32(q.Parent) {
			cur = &qs[i]
		}
	}
	obj := qdiscObject(q, idx)
	what := q.render(false)
	switch {
	case cur == nil || cur.Handle == 0: // none, or the kernel's default
		if err := s.tc.Qdisc().Replace(&obj); err != nil {
			return fmt.Errorf("shaping: add %s: %w", what, err)
		}
		u.push(func() error { return s.tc.Qdisc().Delete(&obj) })
	case q.Kind == "ingress" && (cur.Kind == "ingress" || cur.Kind == "clsact"):
		// present (clsact: someone else's, shared)
	case cur.Kind == q.Kind && cur.Handle == uint32(q.Handle):
		switch q.Kind {
		case "htb":
			if cur.Htb != nil && cur.Htb.Init != nil && cur.Htb.Init.Defcls == uint32(q.Default) {
				return nil
			}
			// HTB cannot change its default class: start over.
			if err := s.deleteQdisc(*cur); err != nil && !isGone(err) {
				return fmt.Errorf("shaping: replace %s: %w", what, err)
			}
			if err := s.tc.Qdisc().Add(&obj); err != nil {
				return fmt.Errorf("shaping: add %s: %w", what, err)
			}
			u.push(func() error { return s.tc.Qdisc().Delete(&obj) })
		default:
			if err := s.tc.Qdisc().Change(&obj); err != nil {
				return fmt.Errorf("shaping: change %s: %w", what, err)
			}
		}
	default: // another qdisc there: replace it
		if err := s.tc.Qdisc().Replace(&obj); err != nil {
			return fmt.Errorf("shaping: replace %s %s with %s: %w", cur.Kind, Handle(cur.Handle), what, err)
		}
		u.push(func() error { return s.tc.Qdisc().Delete(&obj) })
	}
	return nil
}

func qdiscObject(q Qdisc, idx uint32) tc.Object {
	obj := tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx, Handle: uint32(q.Handle), Parent: uint32(q.Parent)},
		Attribute: tc.Attribute{Kind: q.Kind},
	}
	switch q.Kind {
	case "htb":
		obj.Htb = &tc.Htb{Init: &tc.HtbGlob{Version: 3, Rate2Quantum: 10, Defcls: uint32(q.Default)}}
	case "pfifo":
		obj.Pfifo = &tc.FifoOpt{Limit: q.Limit}
	case "sfq":
		obj.Sfq = &tc.Sfq{V0: tc.SfqQopt{PerturbPeriod: 10}}
	case "fq_codel":
		limit := q.Limit
		if limit == 0 {
			limit = 10240 // the kernel's default; go-tc needs one option
		}
		obj.FqCodel = &tc.FqCodel{Limit: &limit}
	}
	return obj
}

func (s *Shaper) classObject(c Class, idx uint32) tc.Object {
	opt := &tc.HtbOpt{
		Rate:    tc.RateSpec{Linklayer: linklayerEthernet, Rate: uint32(min(c.Rate, math.MaxUint32))},
		Ceil:    tc.RateSpec{Linklayer: linklayerEthernet, Rate: uint32(min(c.Ceil, math.MaxUint32))},
		Buffer:  s.clock.ticks(c.Burst, c.Rate),
		Cbuffer: s.clock.ticks(c.Cburst, c.Ceil),
		Quantum: c.Quantum,
	}
	h := &tc.Htb{Parms: opt}
	if c.Rate >= 1<<32 {
		r := c.Rate
		h.Rate64 = &r
	}
	if c.Ceil >= 1<<32 {
		r := c.Ceil
		h.Ceil64 = &r
	}
	return tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx, Handle: uint32(c.ID), Parent: uint32(c.Parent)},
		Attribute: tc.Attribute{Kind: "htb", Htb: h},
	}
}

func (s *Shaper) ensureClass(c Class, idx uint32, u *undo) error {
	cs, err := s.tc.Class().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx})
	if err != nil {
		return fmt.Errorf("shaping: %s: list classes: %w", c.Dev, err)
	}
	var old *tc.Object
	for i := range cs {
		if cs[i].Handle == uint32(c.ID) && cs[i].Kind == "htb" && cs[i].Htb != nil && cs[i].Htb.Parms != nil {
			old = &tc.Object{Msg: cs[i].Msg, Attribute: tc.Attribute{Kind: "htb",
				Htb: &tc.Htb{Parms: cs[i].Htb.Parms, Rate64: cs[i].Htb.Rate64, Ceil64: cs[i].Htb.Ceil64}}}
		}
	}
	obj := s.classObject(c, idx)
	if err := s.tc.Class().Replace(&obj); err != nil {
		return fmt.Errorf("shaping: %s: %w", c.render(false), err)
	}
	if old != nil {
		u.push(func() error { return s.tc.Class().Replace(old) })
	} else {
		u.push(func() error { return s.tc.Class().Delete(&obj) })
	}
	return nil
}

// ethPAll is ETH_P_ALL in network byte order, as tcm_info wants it.
const ethPAll = 0x0300

// beNative is the native-endian number whose memory holds v big-endian:
// go-tc writes u32 keys natively, the kernel compares them as __be32.
func beNative(v uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return binary.NativeEndian.Uint32(b[:])
}

func (s *Shaper) filterObject(f Filter, idx uint32) (tc.Object, error) {
	u32 := &tc.U32{Sel: &tc.U32Sel{Flags: 1 /* TC_U32_TERMINAL */, NKeys: uint8(len(f.Keys))}}
	for _, k := range f.Keys {
		u32.Sel.Keys = append(u32.Sel.Keys, tc.U32Key{Mask: beNative(k.Mask), Val: beNative(k.Val), Off: uint32(k.Off)})
	}
	if f.FlowID != 0 {
		id := uint32(f.FlowID)
		u32.ClassID = &id
	}
	if f.Redirect != "" {
		to, err := s.ifindex(f.Redirect)
		if err != nil {
			return tc.Object{}, err
		}
		u32.Actions = &[]*tc.Action{{Kind: "mirred", Mirred: &tc.Mirred{Parms: &tc.MirredParam{
			Action: tc.ActStolen, Eaction: 1 /* TCA_EGRESS_REDIR */, IfIndex: to}}}}
	}
	return tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx, Handle: f.Handle, Parent: s.filterParent(f, idx), Info: uint32(f.Prio)<<16 | ethPAll},
		Attribute: tc.Attribute{Kind: "u32", U32: u32},
	}, nil
}

// filterParent maps the ingress qdisc to clsact's ingress hook when the
// device has clsact instead of ingress.
func (s *Shaper) filterParent(f Filter, idx uint32) uint32 {
	if f.Parent != ingressQdisc {
		return uint32(f.Parent)
	}
	if qs, err := s.qdiscs(int(idx)); err == nil {
		for _, q := range qs {
			if q.Parent == tc.HandleIngress && q.Kind == "clsact" {
				return tc.HandleIngress&0xFFFF0000 | tc.HandleMinIngress
			}
		}
	}
	return uint32(f.Parent)
}

// ensureFilter creates f or changes the filter with its handle. The kernel
// changes a u32 filter's class and actions in place but keeps its
// selector, so a filter whose keys differ (a port's new MAC) is deleted
// and added again, as libvirt does.
func (s *Shaper) ensureFilter(f Filter, idx uint32, u *undo) error {
	obj, err := s.filterObject(f, idx)
	if err != nil {
		return err
	}
	cur, err := s.filterKeys(f, idx)
	if err != nil {
		return err
	}
	if cur != nil && !slices.Equal(cur, obj.U32.Sel.Keys) {
		if err := s.deleteFilter(f, int(idx), false); err != nil {
			return err
		}
	}
	if err := s.tc.Filter().Replace(&obj); err != nil {
		return fmt.Errorf("shaping: %s: %w", f.render(false), err)
	}
	if cur == nil {
		u.push(func() error { return s.deleteFilter(f, int(idx), false) })
	}
	return nil
}

// filterKeys are the u32 keys of the filter with f's handle, nil if there
// is none.
func (s *Shaper) filterKeys(f Filter, idx uint32) ([]tc.U32Key, error) {
	fs, err := s.tc.Filter().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx, Parent: s.filterParent(f, idx), Info: uint32(f.Prio)<<16 | ethPAll})
	if err != nil {
		if isGone(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("shaping: %s: list filters: %w", f.Dev, err)
	}
	for _, o := range fs {
		if o.Handle == f.Handle && o.Kind == "u32" && o.U32 != nil && o.U32.Sel != nil {
			return append([]tc.U32Key{}, o.U32.Sel.Keys...), nil
		}
	}
	return nil, nil
}

func (s *Shaper) deleteFilter(f Filter, idx int, quiet bool) error {
	obj := tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(idx), Handle: f.Handle, Parent: s.filterParent(f, uint32(idx)), Info: uint32(f.Prio)<<16 | ethPAll},
		Attribute: tc.Attribute{Kind: "u32"},
	}
	if err := s.tc.Filter().Delete(&obj); err != nil && !isGone(err) && !quiet {
		return fmt.Errorf("shaping: delete %s: %w", f.render(true), err)
	}
	return nil
}

// isNotFound reports whether err means the link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &nf) || errors.Is(err, unix.ENODEV))
}

// isGone reports whether err means the tc object is not there.
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// Stats are the counters of the HTB classes of dev and, when dev's
// outbound is shaped, of its IFB's (Outbound set), ordered by device then
// class. A device without shaping has none.
func (s *Shaper) Stats(ctx context.Context, dev string) ([]ClassStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	idx, err := s.ifindex(dev)
	if err != nil {
		return nil, err
	}
	out, err := s.classStats(dev, idx, false)
	if err != nil {
		return nil, err
	}
	ifb := IFBName(int(idx))
	if l, err := s.nl.LinkByName(ifb); err == nil && l.Type() == "ifb" {
		more, err := s.classStats(ifb, uint32(l.Attrs().Index), true)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

func (s *Shaper) classStats(dev string, idx uint32, outbound bool) ([]ClassStats, error) {
	cs, err := s.tc.Class().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx})
	if err != nil {
		return nil, fmt.Errorf("shaping: %s: list classes: %w", dev, err)
	}
	var out []ClassStats
	for _, c := range cs {
		if c.Kind != "htb" {
			continue
		}
		st := ClassStats{Dev: dev, Outbound: outbound, Class: Handle(c.Handle), Parent: Handle(c.Parent)}
		if h := c.Htb; h != nil {
			if h.Parms != nil {
				st.Rate, st.Ceil = uint64(h.Parms.Rate.Rate), uint64(h.Parms.Ceil.Rate)
			}
			if h.Rate64 != nil {
				st.Rate = *h.Rate64
			}
			if h.Ceil64 != nil {
				st.Ceil = *h.Ceil64
			}
		}
		if c.Stats != nil {
			st.Bytes, st.Packets, st.Drops, st.Overlimits, st.Backlog =
				c.Stats.Bytes, c.Stats.Packets, c.Stats.Drops, c.Stats.Overlimits, c.Stats.Backlog
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ClassStats) int { return cmp.Compare(a.Class, b.Class) })
	return out, nil
}

// linklayerEthernet is TC_LINKLAYER_ETHERNET: the kernel computes the
// transmission times itself and needs no rate table.
const linklayerEthernet = 1

// ifbAttrs names a new IFB and keeps the driver's queue length (a zero
// LinkAttrs would set it to 0).
func ifbAttrs(name string) netlink.LinkAttrs {
	a := netlink.NewLinkAttrs()
	a.Name = name
	return a
}

// deleteQdisc deletes a qdisc as listed by qdiscs. go-tc wants the kind's
// options even to delete, so they are passed back as dumped.
func (s *Shaper) deleteQdisc(q tc.Object) error {
	obj := tc.Object{Msg: q.Msg, Attribute: tc.Attribute{Kind: q.Kind}}
	switch q.Kind {
	case "htb":
		obj.Htb = &tc.Htb{}
	case "pfifo", "bfifo":
		obj.Pfifo, obj.Bfifo = &tc.FifoOpt{}, &tc.FifoOpt{}
	case "sfq":
		obj.Sfq = &tc.Sfq{}
	case "fq_codel":
		limit := uint32(0)
		obj.FqCodel = &tc.FqCodel{Limit: &limit}
	}
	return s.tc.Qdisc().Delete(&obj)
}
