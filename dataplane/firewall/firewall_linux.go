package firewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// batchTimeout bounds the wait for the kernel's answers to a batch. The kernel
// answers while processing the sendmsg, so this only fires if the answers
// were lost (e.g. a receive buffer overrun).
const batchTimeout = 10 * time.Second

// Firewall installs plans into the nftables of one network namespace: the one
// of the connection it is given.
type Firewall struct {
	conn *nftables.Conn
	// mu serialises Apply and Remove, so that racing calls for one bridge
	// each leave the whole state they promise (Remove also queues messages
	// on the shared Conn).
	mu sync.Mutex
}

var errNoConn = errors.New("no nftables connection (use New)")

// New returns a Firewall working through conn. Apply and Watch open netlink
// sockets of their own in conn's network namespace (conn.NetNS): Apply because
// nftables.Conn cannot encode every rule correctly (see marshalExpr), Watch
// because a monitor consumes its socket.
func New(conn *nftables.Conn) *Firewall { return &Firewall{conn: conn} }

// Apply makes the kernel hold exactly p, in one nftables transaction: for each
// family, the bridge's table is created if missing and deleted with everything
// in it, and the plan's table, if it has one for the family, is created again
// with its chains and rules. Other programs never see a
// half-built firewall, and a failure leaves the previous state untouched.
// bridgeIndex is the ifindex of p.Bridge, which the iif/oif matches compare
// against (as nft does when it loads `iif NAME`); when the bridge is
// re-created with a new index, the plan must be applied again.
//
// A plan without tables removes the bridge's tables, if any.
func (f *Firewall) Apply(p *Plan, bridgeIndex int) error {
	if p == nil {
		return errors.New("firewall: apply: nil plan")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.apply(p, bridgeIndex); err != nil {
		return fmt.Errorf("network %q: firewall: apply: %w", p.Network, err)
	}
	return nil
}

func (f *Firewall) apply(p *Plan, bridgeIndex int) error {
	if f.conn == nil {
		return errNoConn
	}
	if len(p.Tables) == 0 {
		if p.Bridge == "" {
			return nil // nothing of ours can exist: no bridge, no table name
		}
		return f.remove(p.Bridge)
	}
	if p.Bridge == "" {
		return errors.New("plan has tables but no bridge")
	}
	if bridgeIndex <= 0 {
		return fmt.Errorf("invalid ifindex %d for bridge %q", bridgeIndex, p.Bridge)
	}
	idx := Ifindexes{p.Bridge: bridgeIndex}
	for _, t := range p.Tables {
		if t.Family != IPv4 && t.Family != IPv6 {
			return fmt.Errorf("table %s: invalid family %v", t.Name, t.Family)
		}
	}
	// Deleting a table in a batch makes the kernel's commit wait for RCU
	// grace periods (10-30 ms); a first start has nothing to delete, so the
	// delete is only sent for tables that exist. Should one appear between
	// the look-up and the batch, the batch fails whole and is sent again
	// with every delete.
	existing, err := f.existingTables(p.Bridge)
	if err != nil {
		return err
	}
	msgs, err := f.applyMsgs(p, idx, existing)
	if err != nil {
		return err
	}
	if err := sendBatch(f.conn.NetNS, msgs); err == nil {
		return nil
	}
	msgs, err = f.applyMsgs(p, idx, map[Family]bool{IPv4: true, IPv6: true})
	if err != nil {
		return err
	}
	return sendBatch(f.conn.NetNS, msgs)
}

// existingTables reports which families hold the bridge's table.
func (f *Firewall) existingTables(bridge string) (map[Family]bool, error) {
	out := map[Family]bool{}
	name := TableName(bridge)
	for _, fam := range []Family{IPv4, IPv6} {
		tables, err := f.conn.ListTablesOfFamily(nftables.TableFamily(nfproto(fam)))
		if err != nil {
			return nil, fmt.Errorf("listing %s tables: %w", fam, err)
		}
		for _, t := range tables {
			if t.Name == name {
				out[fam] = true
			}
		}
	}
	return out, nil
}

// applyMsgs is the batch that replaces the bridge's tables with the plan's,
// deleting the families' tables named in replace first.
func (f *Firewall) applyMsgs(p *Plan, idx Ifindexes, replace map[Family]bool) ([]netlink.Message, error) {
	var msgs []netlink.Message
	add := func(m netlink.Message, err error) error {
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		return nil
	}
	for _, fam := range []Family{IPv4, IPv6} {
		name := TableName(p.Bridge)
		if replace[fam] {
			// Adding first makes the delete valid should the table have gone.
			if err := errors.Join(
				add(tableMsg(unix.NFT_MSG_NEWTABLE, fam, name)),
				add(tableMsg(unix.NFT_MSG_DELTABLE, fam, name)),
			); err != nil {
				return nil, err
			}
		}
		i := slices.IndexFunc(p.Tables, func(t Table) bool { return t.Family == fam })
		if i < 0 {
			// The family's table of an earlier plan (the network had
			// IPv6 then) goes too.
			continue
		}
		t := &p.Tables[i]
		if err := add(tableMsg(unix.NFT_MSG_NEWTABLE, t.Family, t.Name)); err != nil {
			return nil, err
		}
		for _, c := range t.Chains {
			if err := add(chainMsg(t.Family, t.Name, c)); err != nil {
				return nil, fmt.Errorf("table %s %s: chain %s: %w", t.Family, t.Name, c.Name, err)
			}
		}
		for _, r := range t.Rules {
			exprs, err := r.Exprs(t.Family, idx)
			if err != nil {
				return nil, fmt.Errorf("table %s %s: rule %q: %w", t.Family, t.Name, r, err)
			}
			if err := add(ruleMsg(t.Family, t.Name, r.Chain, exprs)); err != nil {
				return nil, fmt.Errorf("table %s %s: rule %q: %w", t.Family, t.Name, r, err)
			}
		}
	}
	return msgs, nil
}

// Remove deletes both families' tables of the bridge, atomically; tables that
// do not exist are fine.
func (f *Firewall) Remove(bridge string) error {
	if bridge == "" {
		return errors.New("firewall: remove: empty bridge name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.remove(bridge); err != nil {
		return fmt.Errorf("bridge %q: firewall: remove: %w", bridge, err)
	}
	return nil
}

func (f *Firewall) remove(bridge string) error {
	if f.conn == nil {
		return errNoConn
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Name: TableName(bridge), Family: fam}
		// Adding first makes the delete valid when the table is missing,
		// without a racy look-up.
		f.conn.AddTable(t)
		f.conn.DelTable(t)
	}
	return f.conn.Flush()
}

// Check reports whether the kernel holds exactly the plan: the plan's tables
// and no other table of the bridge, the same chains with the same hooks, and
// in every chain the same rules (compared expression by expression, counter
// values aside). It notices a flushed ruleset, a deleted or added rule, and a
// bridge re-created with another ifindex (bridgeIndex is the current one).
func (f *Firewall) Check(p *Plan, bridgeIndex int) (bool, error) {
	if p == nil {
		return false, errors.New("firewall: check: nil plan")
	}
	ok, err := f.check(p, bridgeIndex)
	if err != nil {
		return false, fmt.Errorf("network %q: firewall: check: %w", p.Network, err)
	}
	return ok, nil
}

func (f *Firewall) check(p *Plan, bridgeIndex int) (bool, error) {
	if f.conn == nil {
		return false, errNoConn
	}
	if p.Bridge == "" {
		return len(p.Tables) == 0, nil
	}
	name := TableName(p.Bridge)
	idx := Ifindexes{p.Bridge: bridgeIndex}
	for _, fam := range []Family{IPv4, IPv6} {
		var want *Table
		for i := range p.Tables {
			if p.Tables[i].Family == fam {
				want = &p.Tables[i]
			}
		}
		nfam := nftables.TableFamily(nfproto(fam))
		tables, err := f.conn.ListTablesOfFamily(nfam)
		if err != nil {
			return false, fmt.Errorf("list %s tables: %w", fam, err)
		}
		present := false
		for _, t := range tables {
			present = present || t.Name == name
		}
		if present != (want != nil) {
			return false, nil
		}
		if want == nil {
			continue
		}
		ok, err := f.checkTable(want, idx)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (f *Firewall) checkTable(want *Table, idx Ifindexes) (bool, error) {
	nfam := nftables.TableFamily(nfproto(want.Family))
	all, err := f.conn.ListChainsOfTableFamily(nfam)
	if err != nil {
		return false, fmt.Errorf("list %s chains: %w", want.Family, err)
	}
	got := map[string]*nftables.Chain{}
	for _, c := range all {
		if c.Table != nil && c.Table.Name == want.Name {
			got[c.Name] = c
		}
	}
	if len(got) != len(want.Chains) {
		return false, nil
	}
	table := &nftables.Table{Name: want.Name, Family: nfam}
	for _, c := range want.Chains {
		kc, ok := got[c.Name]
		if !ok || !sameHook(c.Base, kc) {
			return false, nil
		}
		rules, err := f.conn.GetRules(table, &nftables.Chain{Name: c.Name, Table: table})
		if err != nil {
			return false, fmt.Errorf("list rules of %s %s %s: %w", want.Family, want.Name, c.Name, err)
		}
		wantRules := want.ChainRules(c.Name)
		if len(rules) != len(wantRules) {
			return false, nil
		}
		for i, r := range wantRules {
			exprs, err := r.Exprs(want.Family, idx)
			if err != nil {
				return false, fmt.Errorf("rule %q: %w", r, err)
			}
			if !sameExprs(exprs, rules[i].Exprs) {
				return false, nil
			}
		}
	}
	return true, nil
}

func sameHook(want *BaseChain, got *nftables.Chain) bool {
	if want == nil {
		return got.Hooknum == nil
	}
	hook, ok := hooks[want.Hook]
	return ok && got.Hooknum != nil && *got.Hooknum == hook &&
		got.Priority != nil && int32(*got.Priority) == want.Priority &&
		string(got.Type) == want.Type &&
		got.Policy != nil && *got.Policy == nftables.ChainPolicyAccept
}

// sameExprs compares a planned rule with one read back from the kernel.
func sameExprs(want, got []expr.Any) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		g := got[i]
		if _, ok := g.(*expr.Counter); ok {
			g = &expr.Counter{} // traffic is no change
		}
		if !reflect.DeepEqual(want[i], g) {
			return false
		}
	}
	return true
}

var hooks = map[string]nftables.ChainHook{
	"forward":     *nftables.ChainHookForward,
	"postrouting": *nftables.ChainHookPostrouting,
}

// Watch calls changed whenever a table, chain or rule of a vnetd table (any
// network's) is deleted in the namespace, e.g. by `nft flush ruleset` or a
// firewall reload; the caller should then Check its plans and Apply the ones
// that are gone. Apply itself deletes tables, so changed also runs after
// vnetd's own updates, and once per deleted object: it should be cheap and
// must not block (a non-blocking send on a channel is the usual shape).
//
// Watch returns nil once ctx is done, or an error if the event stream breaks
// (for instance when the kernel dropped events because changed was too slow);
// events may have been missed then, so Check everything before watching again.
func (f *Firewall) Watch(ctx context.Context, changed func()) error {
	if err := f.watch(ctx, changed); err != nil {
		return fmt.Errorf("firewall: watch: %w", err)
	}
	return nil
}

func (f *Firewall) watch(ctx context.Context, changed func()) error {
	if f.conn == nil {
		return errNoConn
	}
	if changed == nil {
		return errors.New("nil callback")
	}
	// A monitor owns its socket (it reads every message on it), so it gets a
	// connection of its own in the same namespace rather than sharing a
	// possibly lasting socket with Apply and Check.
	conn, err := nftables.New(nftables.WithNetNSFd(f.conn.NetNS))
	if err != nil {
		return err
	}
	// Everything, filtered below: google/nftables v0.3.0 tests its event
	// mask as (mask&1)<<type, so any mask but "all" drops every event.
	mon := nftables.NewMonitor(
		nftables.WithMonitorAction(nftables.MonitorActionAny),
		nftables.WithMonitorObject(nftables.MonitorObjectAny),
	)
	events, err := conn.AddMonitor(mon)
	if err != nil {
		return err
	}
	defer func() {
		_ = mon.Close()
		// The monitor's goroutines only exit once their last event is
		// taken.
		for range events {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("nftables monitor stopped")
			}
			if ev.Type == nftables.MonitorEventTypeOOB {
				return fmt.Errorf("nftables monitor: %w", ev.Error)
			}
			if ours(ev) {
				changed()
			}
		}
	}
}

// ours reports whether an event is the deletion of a vnetd table, or of a
// chain or rule in one.
func ours(ev *nftables.MonitorEvent) bool {
	switch ev.Type {
	case nftables.MonitorEventTypeDelTable, nftables.MonitorEventTypeDelChain, nftables.MonitorEventTypeDelRule:
	default:
		return false
	}
	if ev.Error != nil {
		return true // a deletion that did not parse may be ours: assume it is
	}
	var t *nftables.Table
	switch d := ev.Data.(type) {
	case *nftables.Table:
		t = d
	case *nftables.Chain:
		t = d.Table
	case *nftables.Rule:
		t = d.Table
	default:
		return false
	}
	return t != nil && strings.HasPrefix(t.Name, TablePrefix) &&
		(t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6)
}

// The messages of a batch. nftables.Conn cannot carry a masquerade with a
// port range correctly (see marshalExpr), so Apply's batch is put together
// here, with google/nftables' expression encoders for everything else.

func nftMsg(msgType uint16, fam Family, flags netlink.HeaderFlags, attrs []netlink.Attribute) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | netlink.Acknowledge | flags,
		},
		Data: append(nfgenmsg(nfproto(fam), 0), data...),
	}, nil
}

// nfgenmsg is struct nfgenmsg: family, version, resource id (big endian).
func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func cstring(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func tableMsg(msgType uint16, fam Family, name string) (netlink.Message, error) {
	attrs := []netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: cstring(name)}}
	var flags netlink.HeaderFlags
	if msgType == unix.NFT_MSG_NEWTABLE {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: be32(0)})
		flags = netlink.Create
	}
	return nftMsg(msgType, fam, flags, attrs)
}

func chainMsg(fam Family, table string, c Chain) (netlink.Message, error) {
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstring(table)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstring(c.Name)},
	}
	if c.Base != nil {
		hook, ok := hooks[c.Base.Hook]
		if !ok {
			return netlink.Message{}, fmt.Errorf("unknown hook %q", c.Base.Hook)
		}
		h, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_HOOK_HOOKNUM, Data: be32(uint32(hook))},
			{Type: unix.NFTA_HOOK_PRIORITY, Data: be32(uint32(c.Base.Priority))},
		})
		if err != nil {
			return netlink.Message{}, err
		}
		attrs = append(attrs,
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: h},
			netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: be32(uint32(nftables.ChainPolicyAccept))},
			netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: cstring(c.Base.Type)},
		)
	}
	return nftMsg(unix.NFT_MSG_NEWCHAIN, fam, netlink.Create, attrs)
}

func ruleMsg(fam Family, table, chain string, exprs []expr.Any) (netlink.Message, error) {
	var elems []netlink.Attribute
	for _, e := range exprs {
		b, err := marshalExpr(fam, e)
		if err != nil {
			return netlink.Message{}, err
		}
		elems = append(elems, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	list, err := netlink.MarshalAttributes(elems)
	if err != nil {
		return netlink.Message{}, err
	}
	return nftMsg(unix.NFT_MSG_NEWRULE, fam, netlink.Create|netlink.Append, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(table)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring(chain)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: list},
	})
}

// sendBatch sends msgs as one nfnetlink batch (a single transaction: all or
// nothing) in the namespace netns (0: the calling thread's) and waits for the
// kernel's answer to every message.
func sendBatch(netns int, msgs []netlink.Message) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer c.Close()
	// Best effort: extended acks put the kernel's reason in the error.
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)

	marker := func(t uint16) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(t), Flags: netlink.Request},
			Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
		}
	}
	batch := append([]netlink.Message{marker(unix.NFNL_MSG_BATCH_BEGIN)}, msgs...)
	batch = append(batch, marker(unix.NFNL_MSG_BATCH_END))
	if _, err := c.SendMessages(batch); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(batchTimeout)); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	// One acknowledgement (or error) per message; Receive fails on the first
	// error, and the kernel has then rolled the whole batch back.
	for acked := 0; acked < len(msgs); {
		replies, err := c.Receive()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error {
				acked++
			}
		}
	}
	return nil
}
