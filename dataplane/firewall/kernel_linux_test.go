package firewall

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// kernelNetXML has both families, a forward dev and a non-byte-aligned IPv4
// prefix.
const kernelNetXML = `<network>
  <name>kernel</name>
  <bridge name='br0'/>
  <forward mode='nat' dev='eth9'/>
  <ip address='10.77.0.1' prefix='20'/>
  <ip family='ipv6' address='fd00:77::1' prefix='64'/>
</network>`

// tableBlocks splits `nft list ruleset` output into "family name" → body.
func tableBlocks(listing string) map[string]string {
	blocks := map[string]string{}
	var cur string
	for _, line := range strings.Split(listing, "\n") {
		if rest, ok := strings.CutPrefix(line, "table "); ok {
			cur = strings.TrimSuffix(rest, " {")
			continue
		}
		if cur != "" {
			blocks[cur] += line + "\n"
		}
	}
	return blocks
}

func TestKernelApplyCheckRemove(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t, "fw")
	fw := New(ns.conn(t))
	ns.ip(t, "link", "add", "br0", "type", "bridge")
	idx := ns.ifindex(t, "br0")
	p, err := Build(parseNetwork(t, kernelNetXML))
	if err != nil {
		t.Fatal(err)
	}
	check := func(want bool, why string) {
		t.Helper()
		ok, err := fw.Check(p, idx)
		if err != nil {
			t.Fatalf("Check (%s): %v", why, err)
		}
		if ok != want {
			t.Fatalf("Check (%s) = %v, want %v", why, ok, want)
		}
	}

	check(false, "nothing applied")
	// Twice: the second Apply replaces, never duplicates.
	for i := 0; i < 2; i++ {
		if err := fw.Apply(p, idx); err != nil {
			t.Fatal(err)
		}
	}
	blocks := tableBlocks(ns.run(t, "nft", "list", "ruleset"))
	if len(blocks) != len(p.Tables) {
		t.Errorf("nft list ruleset shows tables %v, want %d", blocks, len(p.Tables))
	}
	for _, tb := range p.Tables {
		body, ok := blocks[tb.Family.String()+" "+tb.Name]
		if !ok {
			t.Errorf("no table %s %s in nft list ruleset", tb.Family, tb.Name)
			continue
		}
		if got := len(regexp.MustCompile(`(?m)^\s.*\bcounter packets `).FindAllString(body, -1)); got != len(tb.Rules) {
			t.Errorf("table %s %s: %d rules, want %d:\n%s", tb.Family, tb.Name, got, len(tb.Rules), body)
		}
	}
	check(true, "applied")

	// A different ifindex: the bridge was re-created, the rules are stale.
	if ok, err := fw.Check(p, idx+100); err != nil || ok {
		t.Errorf("Check with another bridge index = %v, %v; want false", ok, err)
	}

	ns.run(t, "nft", "flush", "chain", "ip", "vnetd_br0", "guest_nat")
	check(false, "guest_nat flushed")
	if err := fw.Apply(p, idx); err != nil {
		t.Fatal(err)
	}
	check(true, "re-applied")

	// Delete a single rule, by handle.
	listing := ns.run(t, "nft", "-a", "list", "chain", "ip6", "vnetd_br0", "guest_output")
	m := regexp.MustCompile(`counter .* # handle (\d+)`).FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no rule handle in:\n%s", listing)
	}
	ns.run(t, "nft", "delete", "rule", "ip6", "vnetd_br0", "guest_output", "handle", m[1])
	check(false, "one rule deleted")

	// A rule added behind our back also counts.
	if err := fw.Apply(p, idx); err != nil {
		t.Fatal(err)
	}
	ns.run(t, "nft", "add", "rule", "ip", "vnetd_br0", "guest_cross", "accept")
	check(false, "rule added")

	// The network loses IPv6: its ip6 table goes with the same Apply.
	v4 := *p
	v4.Tables = p.Tables[:1]
	if err := fw.Apply(&v4, idx); err != nil {
		t.Fatal(err)
	}
	if blocks := tableBlocks(ns.run(t, "nft", "list", "ruleset")); len(blocks) != 1 {
		t.Errorf("tables after applying an IPv4-only plan: %v", blocks)
	}
	if ok, err := fw.Check(&v4, idx); err != nil || !ok {
		t.Errorf("Check(IPv4-only plan) = %v, %v", ok, err)
	}

	if err := fw.Remove("br0"); err != nil {
		t.Fatal(err)
	}
	if out := ns.run(t, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("ruleset after Remove:\n%s", out)
	}
	check(false, "removed")
	if err := fw.Remove("br0"); err != nil {
		t.Errorf("Remove of missing tables: %v", err)
	}

	// Applying a plan without tables (the network became open) removes the
	// bridge's tables, and Check agrees with the empty state.
	if err := fw.Apply(p, idx); err != nil {
		t.Fatal(err)
	}
	open := &Plan{Network: p.Network, Bridge: "br0"}
	if err := fw.Apply(open, idx); err != nil {
		t.Fatal(err)
	}
	if out := ns.run(t, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("ruleset after applying an empty plan:\n%s", out)
	}
	if ok, err := fw.Check(open, idx); err != nil || !ok {
		t.Errorf("Check(empty plan) = %v, %v", ok, err)
	}

	// A failed batch changes nothing: a rule naming an interface index the
	// plan cannot resolve never reaches the kernel, and a kernel error rolls
	// everything back.
	if err := fw.Apply(p, idx); err != nil {
		t.Fatal(err)
	}
	bad := *p
	bad.Tables = append([]Table(nil), p.Tables...)
	bad.Tables[0].Rules = append(append([]Rule(nil), p.Tables[0].Rules...),
		Rule{Chain: "no_such_chain", Action: Action{Verdict: Accept}})
	if err := fw.Apply(&bad, idx); err == nil || !strings.Contains(err.Error(), `network "kernel": firewall: apply:`) {
		t.Errorf("Apply with a rule in a missing chain: %v", err)
	}
	check(true, "after a failed Apply")
}

func TestKernelWatch(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t, "watch")
	fw := New(ns.conn(t))
	ns.ip(t, "link", "add", "br0", "type", "bridge")
	idx := ns.ifindex(t, "br0")
	p, err := Build(parseNetwork(t, kernelNetXML))
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Apply(p, idx); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	fired := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- fw.Watch(ctx, func() {
			select {
			case fired <- struct{}{}:
			default:
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	drain := func() {
		for {
			select {
			case <-fired:
			case <-time.After(200 * time.Millisecond):
				return
			}
		}
	}
	// The subscription starts asynchronously: re-apply (which deletes our
	// tables) until Watch reports it.
	live := false
	for deadline := time.Now().Add(5 * time.Second); !live && time.Now().Before(deadline); {
		if err := fw.Apply(p, idx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-fired:
			live = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !live {
		t.Fatal("Watch never reported the deletions of Apply")
	}
	drain()

	// Someone else's table coming and going is none of our business.
	ns.run(t, "nft", "add", "table", "ip", "other")
	ns.run(t, "nft", "delete", "table", "ip", "other")
	select {
	case <-fired:
		t.Error("Watch fired for a table that is not vnetd's")
	case <-time.After(300 * time.Millisecond):
	}

	ns.run(t, "nft", "flush", "ruleset")
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not fire after nft flush ruleset")
	}
	if ok, err := fw.Check(p, idx); err != nil || ok {
		t.Errorf("Check after flush ruleset = %v, %v; want false", ok, err)
	}
}

var (
	debugHeader  = regexp.MustCompile(`^(ip6? \S+ \S+)( \d+)+$`)
	debugCounter = regexp.MustCompile(`counter (pkts|packets) \d+ bytes \d+`)
)

// bytecode is `nft --debug=netlink list ruleset`: each rule's expressions as
// the kernel holds them, then the listing; handles and counters are dropped.
func bytecode(t *testing.T, ns *netNS) string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(ns.run(t, "nft", "--debug=netlink", "list", "ruleset"), "\n") {
		if m := debugHeader.FindStringSubmatch(line); m != nil {
			line = m[1]
		}
		out = append(out, debugCounter.ReplaceAllString(line, "counter"))
	}
	return strings.Join(out, "\n")
}

// TestKernelMatchesNft applies plans with Apply in one namespace and loads
// their Plan.NFT text with `nft -f` in another, and compares what the kernel
// holds, expression by expression: the netlink encoding of every rule is
// nft's own, and the text is loadable and means the same. It covers libvirt's
// corpus networks and our golden ones.
func TestKernelMatchesNft(t *testing.T) {
	requireKernel(t)
	type network struct{ name, xml string }
	var nets []network
	xmls, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	for _, x := range xmls {
		data, err := os.ReadFile(x)
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, network{filepath.Base(x), string(data)})
	}
	corpus := ""
	t.Run("corpus", func(t *testing.T) { corpus = firewallCorpus(t) })
	if corpus != "" {
		for _, name := range networkxml2firewallCases {
			data, err := os.ReadFile(filepath.Join(corpus, name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			nets = append(nets, network{"libvirt " + name, string(data)})
		}
	}

	a, b := newNetNS(t, "apply"), newNetNS(t, "nft")
	fw := New(a.conn(t))
	b.conn(t)
	// The same bridges in the same order: the same ifindexes on both sides.
	bridges := map[string]int{}
	var plans []*Plan
	for _, n := range nets {
		p, err := Build(parseNetwork(t, n.xml))
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		plans = append(plans, p)
		if _, ok := bridges[p.Bridge]; !ok {
			a.ip(t, "link", "add", p.Bridge, "type", "bridge")
			b.ip(t, "link", "add", p.Bridge, "type", "bridge")
			bridges[p.Bridge] = a.ifindex(t, p.Bridge)
			if ib := b.ifindex(t, p.Bridge); ib != bridges[p.Bridge] {
				t.Fatalf("bridge %s: ifindex %d and %d", p.Bridge, bridges[p.Bridge], ib)
			}
		}
	}
	dir := t.TempDir()
	for i, p := range plans {
		name := nets[i].name
		if err := fw.Apply(p, bridges[p.Bridge]); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		file := filepath.Join(dir, "plan.nft")
		if err := os.WriteFile(file, []byte(p.NFT()), 0o644); err != nil {
			t.Fatal(err)
		}
		b.run(t, "nft", "-f", file)
		got, want := bytecode(t, a), bytecode(t, b)
		if got != want {
			t.Errorf("%s: Apply and nft -f disagree.\nApply:\n%s\nnft -f:\n%s", name, got, want)
		}
		if ok, err := fw.Check(p, bridges[p.Bridge]); err != nil || !ok {
			t.Errorf("%s: Check = %v, %v", name, ok, err)
		}
		if err := fw.Remove(p.Bridge); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if out := a.run(t, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
			t.Errorf("%s: ruleset after Remove:\n%s", name, out)
		}
		b.run(t, "nft", "flush", "ruleset")
	}
}
