package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

func init() {
	commands["net-dhcp-leases"] = command{"net-dhcp-leases NET [--mac MAC] [--json]", "show a network's DHCP leases", netDHCPLeases}
}

func netDHCPLeases(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-dhcp-leases", stdout, stderr)
	mac := s.fs.String("mac", "", "only the leases of this MAC address")
	asJSON := s.fs.Bool("json", false, "print JSON")
	pos, ok := s.parse(args, 1)
	if !ok {
		return 2
	}
	list, err := s.client().Leases(context.Background(), pos[0], *mac)
	if err != nil {
		return s.fail(err)
	}
	if *asJSON {
		return printJSON(stdout, list)
	}
	rows := [][]string{{"Expiry Time", "MAC address", "Protocol", "IP address", "Hostname", "Client ID or DUID"}}
	for _, l := range list {
		expiry := "never"
		if l.Expiry != 0 {
			expiry = time.Unix(l.Expiry, 0).Format("2006-01-02 15:04:05")
		}
		orDash := func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		}
		rows = append(rows, []string{expiry, orDash(l.MAC), l.Type, fmt.Sprintf("%s/%d", l.IP, l.Prefix), orDash(l.Hostname), orDash(l.ClientID)})
	}
	printTable(stdout, rows)
	return 0
}
