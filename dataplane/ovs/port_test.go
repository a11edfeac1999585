package ovs

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

// sameJSON fails unless got marshals to the same JSON value as want.
func sameJSON(t *testing.T, got any, want string) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if canon(t, string(g)) != canon(t, want) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", canon(t, string(g)), canon(t, want))
	}
}

func canon(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

func testSpec(v *conf.VLAN) PortSpec {
	return PortSpec{
		Bridge:      "ovsbr0",
		Name:        "vnet0",
		MAC:         net.HardwareAddr{0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF},
		InterfaceID: "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f",
		VMID:        "c7a5fdbd-edaf-9455-926a-d65c16db1809",
		VLAN:        v,
	}
}

const wantExternalIDs = `["map",[
	["attached-mac","52:54:00:ab:cd:ef"],
	["iface-id","09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"],
	["vm-id","c7a5fdbd-edaf-9455-926a-d65c16db1809"],
	["iface-status","active"]]]`

// vlanCase is a <vlan> shape libvirt maps, with the Port columns of an
// insert (portCols, spliced into the Port row) and of an update, and the
// tag, trunks and vlan_mode a server then has as ovs-vsctl --format=json
// shows them (a one-element set bare).
type vlanCase struct {
	name       string
	vlan       *conf.VLAN
	portCols   string
	updateCols string
	vsctl      [3]string
}

func vlanCases() []vlanCase {
	return []vlanCase{
		{
			name:       "no vlan",
			vlan:       nil,
			portCols:   ``,
			updateCols: `"tag":["set",[]],"trunks":["set",[]],"vlan_mode":["set",[]]`,
			vsctl:      [3]string{`["set",[]]`, `["set",[]]`, `["set",[]]`},
		},
		{
			name:       "vlan without tags",
			vlan:       &conf.VLAN{},
			portCols:   ``,
			updateCols: `"tag":["set",[]],"trunks":["set",[]],"vlan_mode":["set",[]]`,
			vsctl:      [3]string{`["set",[]]`, `["set",[]]`, `["set",[]]`},
		},
		{
			name:       "access tag",
			vlan:       &conf.VLAN{Tags: []conf.VLANTag{{ID: 42}}},
			portCols:   `,"tag":42`,
			updateCols: `"tag":42,"trunks":["set",[]],"vlan_mode":["set",[]]`,
			vsctl:      [3]string{`42`, `["set",[]]`, `["set",[]]`},
		},
		{
			name:       "trunk of one",
			vlan:       &conf.VLAN{Trunk: true, Tags: []conf.VLANTag{{ID: 42}}},
			portCols:   `,"trunks":["set",[42]]`,
			updateCols: `"tag":["set",[]],"trunks":["set",[42]],"vlan_mode":["set",[]]`,
			vsctl:      [3]string{`["set",[]]`, `42`, `["set",[]]`},
		},
		{
			name:       "trunk",
			vlan:       &conf.VLAN{Trunk: true, Tags: []conf.VLANTag{{ID: 47}, {ID: 42}, {ID: 0}, {ID: 42}}},
			portCols:   `,"trunks":["set",[0,42,47]]`,
			updateCols: `"tag":["set",[]],"trunks":["set",[0,42,47]],"vlan_mode":["set",[]]`,
			vsctl:      [3]string{`["set",[]]`, `["set",[0,42,47]]`, `["set",[]]`},
		},
		{
			name: "trunk native tagged",
			vlan: &conf.VLAN{Trunk: true, Tags: []conf.VLANTag{
				{ID: 42}, {ID: 123, NativeMode: conf.NativeTagged}, {ID: 4095}}},
			portCols:   `,"tag":123,"trunks":["set",[42,123,4095]],"vlan_mode":"native-tagged"`,
			updateCols: `"tag":123,"trunks":["set",[42,123,4095]],"vlan_mode":"native-tagged"`,
			vsctl:      [3]string{`123`, `["set",[42,123,4095]]`, `"native-tagged"`},
		},
		{
			name: "trunk native untagged",
			vlan: &conf.VLAN{Trunk: true, Tags: []conf.VLANTag{
				{ID: 7, NativeMode: conf.NativeUntagged}, {ID: 8}}},
			portCols:   `,"tag":7,"trunks":["set",[7,8]],"vlan_mode":"native-untagged"`,
			updateCols: `"tag":7,"trunks":["set",[7,8]],"vlan_mode":"native-untagged"`,
			vsctl:      [3]string{`7`, `["set",[7,8]]`, `"native-untagged"`},
		},
	}
}

func TestInsertOps(t *testing.T) {
	for _, tc := range vlanCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := testSpec(tc.vlan)
			v, err := p.check()
			if err != nil {
				t.Fatal(err)
			}
			want := `[
			{"op":"wait","table":"Bridge","where":[["name","==","ovsbr0"]],
			 "columns":["name"],"until":"==","rows":[{"name":"ovsbr0"}],"timeout":0},
			{"op":"wait","table":"Port","where":[["name","==","vnet0"]],
			 "columns":["name"],"until":"==","rows":[],"timeout":0},
			{"op":"insert","table":"Interface","uuid-name":"vnetd_iface",
			 "row":{"name":"vnet0","external_ids":` + wantExternalIDs + `}},
			{"op":"insert","table":"Port","uuid-name":"vnetd_port",
			 "row":{"name":"vnet0","interfaces":["named-uuid","vnetd_iface"]` + tc.portCols + `}},
			{"op":"mutate","table":"Bridge","where":[["name","==","ovsbr0"]],
			 "mutations":[["ports","insert",["set",[["named-uuid","vnetd_port"]]]]]}
			]`
			sameJSON(t, insertOps(p, v), want)
		})
	}
}

func TestUpdateOps(t *testing.T) {
	const port, iface = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	for _, tc := range vlanCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := testSpec(tc.vlan)
			v, err := p.check()
			if err != nil {
				t.Fatal(err)
			}
			want := `[
			{"op":"wait","table":"Bridge",
			 "where":[["name","==","ovsbr0"],["ports","includes",["uuid","` + port + `"]]],
			 "columns":["name"],"until":"==","rows":[{"name":"ovsbr0"}],"timeout":0},
			{"op":"wait","table":"Port",
			 "where":[["_uuid","==",["uuid","` + port + `"]],["interfaces","includes",["uuid","` + iface + `"]]],
			 "columns":["name"],"until":"==","rows":[{"name":"vnet0"}],"timeout":0},
			{"op":"update","table":"Port","where":[["_uuid","==",["uuid","` + port + `"]]],
			 "row":{` + tc.updateCols + `}},
			{"op":"mutate","table":"Interface","where":[["_uuid","==",["uuid","` + iface + `"]]],
			 "mutations":[
			   ["external_ids","delete",["set",["attached-mac","iface-id","vm-id","port-profile","iface-status"]]],
			   ["external_ids","insert",` + wantExternalIDs + `]]}
			]`
			sameJSON(t, updateOps(p, v, port, iface), want)
		})
	}
}

func TestDeleteOps(t *testing.T) {
	const port = "11111111-1111-1111-1111-111111111111"
	sameJSON(t, deleteOps("ovsbr0", "vnet0", port), `[
	{"op":"wait","table":"Port","where":[["name","==","vnet0"]],
	 "columns":["_uuid"],"until":"==","rows":[{"_uuid":["uuid","`+port+`"]}],"timeout":0},
	{"op":"mutate","table":"Bridge","where":[["name","==","ovsbr0"]],
	 "mutations":[["ports","delete",["set",[["uuid","`+port+`"]]]]]}
	]`)
}

func TestExternalIDs(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    PortSpec
		want string
	}{
		{"full", testSpec(nil), wantExternalIDs},
		{"profile", PortSpec{MAC: net.HardwareAddr{0xfe, 0, 0, 0, 0, 1}, ProfileID: "prof"},
			`["map",[["attached-mac","fe:00:00:00:00:01"],["port-profile","prof"],["iface-status","active"]]]`},
		{"bare", PortSpec{}, `["map",[["iface-status","active"]]]`},
	} {
		t.Run(tc.name, func(t *testing.T) { sameJSON(t, tc.p.externalIDs(), tc.want) })
	}
}

func TestCheckErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    PortSpec
		want string
	}{
		{"no bridge", PortSpec{Name: "vnet0"}, "no bridge name"},
		{"no name", PortSpec{Bridge: "br"}, "no port name"},
		{"short mac", PortSpec{Bridge: "br", Name: "v", MAC: net.HardwareAddr{1, 2}}, "not 6 bytes"},
		{"id over 4095", PortSpec{Bridge: "br", Name: "v",
			VLAN: &conf.VLAN{Tags: []conf.VLANTag{{ID: 4096}}}}, "over 4095"},
		{"two natives", PortSpec{Bridge: "br", Name: "v", VLAN: &conf.VLAN{Trunk: true,
			Tags: []conf.VLANTag{{ID: 1, NativeMode: conf.NativeTagged}, {ID: 2, NativeMode: conf.NativeUntagged}}}},
			"only one"},
		{"two tags without trunk", PortSpec{Bridge: "br", Name: "v",
			VLAN: &conf.VLAN{Tags: []conf.VLANTag{{ID: 1}, {ID: 2}}}}, "needs trunk"},
		{"native without trunk", PortSpec{Bridge: "br", Name: "v",
			VLAN: &conf.VLAN{Tags: []conf.VLANTag{{ID: 1, NativeMode: conf.NativeTagged}}}}, "needs trunk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseTransactResult(t *testing.T) {
	ops := []operation{
		opAssert("Bridge", []condition{eq("name", "b")}, []string{"name"}, row{"name": "b"}),
		opInsert("Port", row{"name": "p"}, "x"),
	}
	raw := func(s string) []json.RawMessage {
		var r []json.RawMessage
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	res, err := parseTransactResult(ops, raw(`[{},{"uuid":["uuid","u1"]}]`))
	if err != nil || len(res) != 2 {
		t.Fatalf("success: %v, %d results", err, len(res))
	}

	_, err = parseTransactResult(ops, raw(`[{"error":"timed out"},null]`))
	var te *TransactError
	if !errors.As(err, &te) || te.Op != 0 || te.What != "wait Bridge" || te.Err != "timed out" {
		t.Fatalf("failed wait: %#v", err)
	}
	if !failedOp(err, 0) || failedOp(err, 1) {
		t.Errorf("failedOp misreads %v", err)
	}

	_, err = parseTransactResult(ops, raw(`[{},{"uuid":["uuid","u1"]},
		{"error":"constraint violation","details":"duplicate name"}]`))
	if !errors.As(err, &te) || te.Op != 2 || te.What != "commit" {
		t.Fatalf("failed commit: %#v", err)
	}
	if want := "ovsdb transact: commit (operation 2): constraint violation: duplicate name"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}

	if _, err := parseTransactResult(ops, raw(`[{}]`)); err == nil {
		t.Error("short result accepted")
	}
}

func TestDecodeUUIDSet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`["uuid","a"]`, []string{"a"}},
		{`["set",[]]`, []string{}},
		{`["set",[["uuid","a"],["uuid","b"]]]`, []string{"a", "b"}},
	} {
		got, err := decodeUUIDSet(json.RawMessage(tc.in))
		if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("decodeUUIDSet(%s) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`"a"`, `["map",[]]`, `["set",[["named-uuid","x"]]]`, `[1,2]`} {
		if got, err := decodeUUIDSet(json.RawMessage(bad)); err == nil {
			t.Errorf("decodeUUIDSet(%s) = %v, want an error", bad, got)
		}
	}
}
