package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
)

func init() {
	for name, c := range map[string]command{
		"net-port-create":        {"net-port-create NET FILE [--attach IFNAME | --tap IFNAME [--tap-owner UID] [--multi-queue]]", "allocate a port and plug its device", netPortCreate},
		"net-port-list":          {"net-port-list NET [--json]", "list a network's ports", netPortList},
		"net-port-dumpxml":       {"net-port-dumpxml NET UUID", "print a port's XML", netPortDumpXML},
		"net-port-delete":        {"net-port-delete NET UUID", "unplug and remove a port", netPortDelete},
		"net-port-set-bandwidth": {"net-port-set-bandwidth NET UUID [--inbound AVG[,PEAK[,BURST[,FLOOR]]]] [--outbound AVG[,PEAK[,BURST]]]", "change a port's rates", netPortSetBandwidth},
	} {
		commands[name] = c
	}
}

func netPortCreate(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-port-create", stdout, stderr)
	attach := s.fs.String("attach", "", "enslave this existing link (a veth end, a hypervisor's tap) to the network")
	tap := s.fs.String("tap", "", "create a persistent tap of this name (for a macvtap plug: its name)")
	owner := s.fs.Int("tap-owner", -1, "user id owning the tap")
	mq := s.fs.Bool("multi-queue", false, "multi-queue tap")
	pos, ok := s.parse(args, 2)
	if !ok {
		return 2
	}
	data, err := readXMLFile(pos[1])
	if err != nil {
		return s.fail(err)
	}
	id, err := s.client().CreatePort(context.Background(), pos[0], data,
		client.PortOptions{Attach: *attach, Tap: *tap, TapOwner: *owner, MultiQueue: *mq})
	if err != nil {
		return s.fail(err)
	}
	fmt.Fprintln(stdout, id)
	return 0
}

func netPortList(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-port-list", stdout, stderr)
	asJSON := s.fs.Bool("json", false, "print JSON")
	pos, ok := s.parse(args, 1)
	if !ok {
		return 2
	}
	list, err := s.client().ListPorts(context.Background(), pos[0])
	if err != nil {
		return s.fail(err)
	}
	if *asJSON {
		return printJSON(stdout, list)
	}
	rows := [][]string{{"UUID", "MAC", "Plug", "Target", "Device"}}
	for _, p := range list {
		rows = append(rows, []string{p.UUID, p.MAC, p.Plug, p.Target, p.Device})
	}
	printTable(stdout, rows)
	return 0
}

func netPortDumpXML(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-port-dumpxml", stdout, stderr)
	pos, ok := s.parse(args, 2)
	if !ok {
		return 2
	}
	xml, err := s.client().PortXML(context.Background(), pos[0], pos[1])
	if err != nil {
		return s.fail(err)
	}
	stdout.Write(xml)
	return 0
}

func netPortDelete(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-port-delete", stdout, stderr)
	pos, ok := s.parse(args, 2)
	if !ok {
		return 2
	}
	if err := s.client().DeletePort(context.Background(), pos[0], pos[1]); err != nil {
		return s.fail(err)
	}
	fmt.Fprintf(stdout, "Network port %s deleted\n", pos[1])
	return 0
}

// parseRate reads virsh domiftune's AVERAGE[,PEAK[,BURST[,FLOOR]]].
func parseRate(s string, withFloor bool) (*api.Rate, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	max := 3
	if withFloor {
		max = 4
	}
	if len(parts) > max {
		return nil, fmt.Errorf("%q: at most %d comma-separated values", s, max)
	}
	var v [4]uint64
	for i, p := range parts {
		if p == "" {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %q is not a number", s, p)
		}
		v[i] = n
	}
	return &api.Rate{Average: v[0], Peak: v[1], Burst: v[2], Floor: v[3]}, nil
}

func netPortSetBandwidth(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-port-set-bandwidth", stdout, stderr)
	in := s.fs.String("inbound", "", "AVERAGE[,PEAK[,BURST[,FLOOR]]] in kB/s (burst in KiB), the guest's view")
	out := s.fs.String("outbound", "", "AVERAGE[,PEAK[,BURST]]")
	pos, ok := s.parse(args, 2)
	if !ok {
		return 2
	}
	var req api.BandwidthRequest
	var err error
	if req.Inbound, err = parseRate(*in, true); err != nil {
		return s.fail(fmt.Errorf("--inbound %w", err))
	}
	if req.Outbound, err = parseRate(*out, false); err != nil {
		return s.fail(fmt.Errorf("--outbound %w", err))
	}
	if err := s.client().SetPortBandwidth(context.Background(), pos[0], pos[1], req); err != nil {
		return s.fail(err)
	}
	fmt.Fprintf(stdout, "Network port %s bandwidth set\n", pos[1])
	return 0
}
