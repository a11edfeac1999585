package ovs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vnetd/vnetd/conf"
)

// These tests run a private ovsdb-server on a fresh Open_vSwitch database
// (no ovs-vswitchd, no kernel datapath) and check the rows with ovs-vsctl,
// which is used here only, to set up and to verify.

// ovsdb is a private ovsdb-server.
type ovsdb struct {
	dir  string
	sock string
}

func schemaPath() string {
	for _, p := range []string{
		"/usr/share/openvswitch/vswitch.ovsschema",
		"/usr/local/share/openvswitch/vswitch.ovsschema",
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// startOVSDB starts ovsdb-server, or skips the test when Open vSwitch
// (Debian's openvswitch-switch) is not installed.
func startOVSDB(t *testing.T) *ovsdb {
	t.Helper()
	for _, tool := range []string{"ovsdb-server", "ovsdb-tool", "ovs-vsctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH (install openvswitch-switch)", tool)
		}
	}
	schema := schemaPath()
	if schema == "" {
		t.Skip("vswitch.ovsschema not found (install openvswitch-switch)")
	}
	// A short directory: a unix socket path is at most 107 bytes.
	dir, err := os.MkdirTemp("", "ovsdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := &ovsdb{dir: dir, sock: filepath.Join(dir, "db.sock")}
	dbFile := filepath.Join(dir, "db.db")
	if out, err := exec.Command("ovsdb-tool", "create", dbFile, schema).CombinedOutput(); err != nil {
		t.Fatalf("ovsdb-tool create: %v\n%s", err, out)
	}

	var log bytes.Buffer
	srv := exec.Command("ovsdb-server",
		"--remote=punix:"+db.sock,
		"--unixctl="+filepath.Join(dir, "ctl"),
		dbFile)
	srv.Env = append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_LOGDIR="+dir, "OVS_DBDIR="+dir)
	srv.Stdout = &log
	srv.Stderr = &log
	if err := srv.Start(); err != nil {
		t.Fatalf("start ovsdb-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		srv.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("ovsdb-server log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(db.sock); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("ovsdb-server exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovsdb-server did not create %s", db.sock)
		}
		time.Sleep(20 * time.Millisecond)
	}

	db.vsctl(t, "init")
	db.vsctl(t, "add-br", "br-test")
	db.vsctl(t, "add-br", "br-other")
	return db
}

// vsctl runs ovs-vsctl on the private database and returns its output.
func (db *ovsdb) vsctl(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"--db=unix:" + db.sock, "--no-wait", "--timeout=5"}, args...)
	cmd := exec.Command("ovs-vsctl", args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+db.dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ovs-vsctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// row returns the named columns of the row of table named name as
// ovs-vsctl's JSON (a one-element set shown bare, maps sorted by key), or
// nil when there is no such row.
func (db *ovsdb) row(t *testing.T, table, name string, columns ...string) map[string]string {
	t.Helper()
	out := db.vsctl(t, "--format=json", "--columns="+strings.Join(columns, ","),
		"find", table, "name="+name)
	var res struct {
		Data     [][]json.RawMessage
		Headings []string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ovs-vsctl find output %s: %v", out, err)
	}
	switch len(res.Data) {
	case 0:
		return nil
	case 1:
	default:
		t.Fatalf("%d %s rows named %s", len(res.Data), table, name)
	}
	r := make(map[string]string)
	for i, h := range res.Headings {
		r[h] = canon(t, string(res.Data[0][i]))
	}
	return r
}

func (db *ovsdb) dial(t *testing.T) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, db.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantPort checks the Port row's VLAN columns (as ovs-vsctl shows them),
// that it is on br-test, and its Interface's external_ids.
func (db *ovsdb) wantPort(t *testing.T, p PortSpec, tag, trunks, mode, extIDs string) {
	t.Helper()
	port := db.row(t, "Port", p.Name, "tag", "trunks", "vlan_mode", "interfaces")
	if port == nil {
		t.Fatalf("no Port row %s", p.Name)
	}
	for col, want := range map[string]string{"tag": tag, "trunks": trunks, "vlan_mode": mode} {
		if port[col] != canon(t, want) {
			t.Errorf("Port %s %s = %s, want %s", p.Name, col, port[col], want)
		}
	}
	iface := db.row(t, "Interface", p.Name, "_uuid", "external_ids")
	if iface == nil {
		t.Fatalf("no Interface row %s", p.Name)
	}
	if port["interfaces"] != iface["_uuid"] {
		t.Errorf("Port %s interfaces %s, want its interface %s", p.Name, port["interfaces"], iface["_uuid"])
	}
	if iface["external_ids"] != canon(t, extIDs) {
		t.Errorf("Interface %s external_ids = %s\nwant %s", p.Name, iface["external_ids"], canon(t, extIDs))
	}
	ports := strings.Fields(db.vsctl(t, "list-ports", p.Bridge))
	if !slices.Contains(ports, p.Name) {
		t.Errorf("bridge %s ports %v lack %s", p.Bridge, ports, p.Name)
	}
}

// ovs-vsctl's JSON of the Interface external_ids testSpec sets (sorted).
const vsctlExternalIDs = `["map",[
	["attached-mac","52:54:00:ab:cd:ef"],
	["iface-id","09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"],
	["iface-status","active"],
	["vm-id","c7a5fdbd-edaf-9455-926a-d65c16db1809"]]]`

func TestServerAddPortVLANs(t *testing.T) {
	db := startOVSDB(t)
	c := db.dial(t)
	ctx := testCtx(t)
	for i, tc := range vlanCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := testSpec(tc.vlan)
			p.Bridge = "br-test"
			p.Name = fmt.Sprintf("vnet%d", i)
			if err := c.AddPort(ctx, p); err != nil {
				t.Fatal(err)
			}
			db.wantPort(t, p, tc.vsctl[0], tc.vsctl[1], tc.vsctl[2], vsctlExternalIDs)
			if ok, err := c.PortExists(ctx, "br-test", p.Name); err != nil || !ok {
				t.Errorf("PortExists = %v, %v; want true", ok, err)
			}
		})
	}
}

func TestServerAddPortTwice(t *testing.T) {
	db := startOVSDB(t)
	c := db.dial(t)
	ctx := testCtx(t)

	p := testSpec(&conf.VLAN{Trunk: true, Tags: []conf.VLANTag{{ID: 7, NativeMode: conf.NativeUntagged}, {ID: 8}}})
	p.Bridge = "br-test"
	if err := c.AddPort(ctx, p); err != nil {
		t.Fatal(err)
	}
	before := db.row(t, "Port", p.Name, "_uuid")
	// Someone else's key on the interface survives an update.
	db.vsctl(t, "set", "Interface", p.Name, "external_ids:ovn-installed=true")

	if err := c.AddPort(ctx, p); err != nil {
		t.Fatalf("second AddPort: %v", err)
	}
	if after := db.row(t, "Port", p.Name, "_uuid"); after["_uuid"] != before["_uuid"] {
		t.Errorf("second AddPort replaced the Port row: %s, then %s", before["_uuid"], after["_uuid"])
	}
	withOVN := `["map",[
		["attached-mac","52:54:00:ab:cd:ef"],
		["iface-id","09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"],
		["iface-status","active"],
		["ovn-installed","true"],
		["vm-id","c7a5fdbd-edaf-9455-926a-d65c16db1809"]]]`
	db.wantPort(t, p, `7`, `["set",[7,8]]`, `"native-untagged"`, withOVN)

	// A changed spec updates the port: all VLAN columns and our keys.
	p.VLAN = &conf.VLAN{Tags: []conf.VLANTag{{ID: 99}}}
	p.MAC = nil
	p.VMID = "5d4f9e2c-0000-4000-8000-000000000001"
	if err := c.AddPort(ctx, p); err != nil {
		t.Fatalf("AddPort with a new spec: %v", err)
	}
	db.wantPort(t, p, `99`, `["set",[]]`, `["set",[]]`, `["map",[
		["iface-id","09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"],
		["iface-status","active"],
		["ovn-installed","true"],
		["vm-id","5d4f9e2c-0000-4000-8000-000000000001"]]]`)
	if n := len(strings.Fields(db.vsctl(t, "list-ports", "br-test"))); n != 1 {
		t.Errorf("br-test has %d ports, want 1", n)
	}
}

func TestServerAddPortConcurrent(t *testing.T) {
	db := startOVSDB(t)
	c := db.dial(t)
	ctx := testCtx(t)

	p := testSpec(&conf.VLAN{Tags: []conf.VLANTag{{ID: 5}}})
	p.Bridge = "br-test"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- c.AddPort(ctx, p) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	db.wantPort(t, p, `5`, `["set",[]]`, `["set",[]]`, vsctlExternalIDs)
}

func TestServerDelPort(t *testing.T) {
	db := startOVSDB(t)
	c := db.dial(t)
	ctx := testCtx(t)

	p := testSpec(&conf.VLAN{Tags: []conf.VLANTag{{ID: 5}}})
	p.Bridge = "br-test"
	if err := c.AddPort(ctx, p); err != nil {
		t.Fatal(err)
	}
	keep := testSpec(nil)
	keep.Bridge, keep.Name = "br-test", "vnet1"
	if err := c.AddPort(ctx, keep); err != nil {
		t.Fatal(err)
	}

	// Not on that bridge, or no such bridge: nothing happens.
	for _, br := range []string{"br-other", "no-such-br"} {
		if err := c.DelPort(ctx, br, p.Name); err != nil {
			t.Errorf("DelPort(%s): %v", br, err)
		}
		if ok, err := c.PortExists(ctx, br, p.Name); err != nil || ok {
			t.Errorf("PortExists(%s) = %v, %v; want false", br, ok, err)
		}
	}
	if ok, err := c.PortExists(ctx, "br-test", p.Name); err != nil || !ok {
		t.Fatalf("PortExists = %v, %v after DelPort on other bridges; want true", ok, err)
	}

	if err := c.DelPort(ctx, "br-test", p.Name); err != nil {
		t.Fatal(err)
	}
	if r := db.row(t, "Port", p.Name, "name"); r != nil {
		t.Errorf("Port row %s left: %v", p.Name, r)
	}
	if r := db.row(t, "Interface", p.Name, "name"); r != nil {
		t.Errorf("Interface row %s left: %v", p.Name, r)
	}
	if ok, err := c.PortExists(ctx, "br-test", p.Name); err != nil || ok {
		t.Errorf("PortExists after DelPort = %v, %v", ok, err)
	}
	if got := db.vsctl(t, "list-ports", "br-test"); got != "vnet1" {
		t.Errorf("br-test ports %q, want vnet1 only", got)
	}

	if err := c.DelPort(ctx, "br-test", p.Name); err != nil {
		t.Errorf("DelPort of a missing port: %v", err)
	}
}

func TestServerAddPortErrors(t *testing.T) {
	db := startOVSDB(t)
	c := db.dial(t)
	ctx := testCtx(t)

	p := testSpec(nil)
	p.Bridge = "no-such-br"
	err := c.AddPort(ctx, p)
	var nf *BridgeNotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "open vswitch bridge no-such-br not found") {
		t.Fatalf("AddPort on a missing bridge: %v", err)
	}
	if r := db.row(t, "Port", p.Name, "name"); r != nil {
		t.Errorf("failed AddPort left a Port row: %v", r)
	}
	if r := db.row(t, "Interface", p.Name, "name"); r != nil {
		t.Errorf("failed AddPort left an Interface row: %v", r)
	}

	// The name is taken on another bridge.
	p.Bridge = "br-other"
	if err := c.AddPort(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.Bridge = "br-test"
	err = c.AddPort(ctx, p)
	var inUse *PortInUseError
	if !errors.As(err, &inUse) || inUse.Bridge != "br-other" {
		t.Fatalf("AddPort of a name on another bridge: %v", err)
	}
	if ok, err := c.PortExists(ctx, "br-test", p.Name); err != nil || ok {
		t.Errorf("PortExists(br-test) = %v, %v; want false", ok, err)
	}

	// A bridge's own internal port (name = bridge) is a Port too.
	q := testSpec(nil)
	q.Bridge, q.Name = "br-test", "br-other"
	if err := c.AddPort(ctx, q); !errors.As(err, &inUse) || inUse.Bridge != "br-other" {
		t.Errorf("AddPort named like another bridge's internal port: %v", err)
	}
}
