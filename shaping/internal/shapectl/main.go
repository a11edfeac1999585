// Command shapectl drives the shaping package on devices of a network
// namespace, for bench/shaping.sh and for poking at it by hand (vnetd
// itself calls the package directly):
//
//	shapectl [-netns NAME] port DEV [-in AVG[,PEAK[,BURST]]] [-out AVG[,PEAK[,BURST]]]
//	shapectl [-netns NAME] network BR [-in ...] [-out ...]
//	shapectl [-netns NAME] plug BR -net-in AVG[,PEAK] -mac MAC -floor F [-avg A] [-others N] [-ids FILE]
//	shapectl [-netns NAME] unplug BR -net-in AVG[,PEAK] -class ID [-others N] [-ids FILE]
//	shapectl [-netns NAME] clear DEV
//	shapectl [-netns NAME] stats DEV
//	shapectl [-netns NAME] probe
//
// Rates are libvirt's: kB/s (×1000 bytes/s), bursts KiB.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/shaping"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "shapectl:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	top := flag.NewFlagSet("shapectl", flag.ContinueOnError)
	nsName := top.String("netns", "", "network namespace (ip netns name); default: the current one")
	if err := top.Parse(args); err != nil {
		return err
	}
	rest := top.Args()
	if len(rest) < 1 {
		return fmt.Errorf("usage: shapectl [-netns NAME] port|network|plug|unplug|clear|stats|probe ...")
	}
	cmd, rest := rest[0], rest[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	in := fs.String("in", "", "inbound AVG[,PEAK[,BURST]]")
	out := fs.String("out", "", "outbound AVG[,PEAK[,BURST]]")
	netIn := fs.String("net-in", "", "the network's inbound AVG[,PEAK]")
	mac := fs.String("mac", "", "port MAC")
	floor := fs.Uint64("floor", 0, "port inbound floor, kB/s")
	avg := fs.Uint64("avg", 0, "port inbound average, kB/s (quantum)")
	others := fs.Uint64("others", 0, "sum of the other ports' floors, kB/s")
	class := fs.Uint("class", 0, "floor class id")
	idsFile := fs.String("ids", "", "file holding the class id bitmap")
	floorSum := fs.Uint64("floor-sum", 0, "network: floors already plugged, kB/s")
	verbose := fs.Bool("v", false, "log debug messages")
	var dev string
	if cmd != "probe" {
		if len(rest) < 1 {
			return fmt.Errorf("%s: missing device", cmd)
		}
		dev, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fd := -1
	if *nsName != "" {
		f, err := os.Open("/var/run/netns/" + *nsName)
		if err != nil {
			return err
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	s, err := shaping.New(fd, log)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	bw, err := bandwidth(*in, *out)
	if err != nil {
		return err
	}
	switch cmd {
	case "probe":
		k, err := s.Probe(ctx)
		if err != nil {
			return err
		}
		fmt.Println(k)
		return nil
	case "port":
		return s.ApplyPort(ctx, dev, bw)
	case "network":
		return s.ApplyNetwork(ctx, dev, bw, *floorSum)
	case "clear":
		return s.ClearPort(ctx, dev)
	case "stats":
		st, err := s.Stats(ctx, dev)
		if err != nil {
			return err
		}
		for _, c := range st {
			fmt.Printf("%s %s outbound=%v rate=%d ceil=%d bytes=%d packets=%d drops=%d overlimits=%d\n",
				c.Dev, c.Class, c.Outbound, c.Rate, c.Ceil, c.Bytes, c.Packets, c.Drops, c.Overlimits)
		}
		return nil
	case "plug", "unplug":
		nr, err := rate(*netIn)
		if err != nil || nr == nil {
			return fmt.Errorf("-net-in: %v", err)
		}
		n := &conf.Network{Name: dev, Forward: conf.Forward{Mode: conf.ForwardNAT}, Bandwidth: &conf.Bandwidth{Inbound: nr}}
		var ids shaping.ClassIDs
		if *idsFile != "" {
			if b, err := os.ReadFile(*idsFile); err == nil {
				if err := ids.UnmarshalText(b); err != nil {
					return err
				}
			}
		}
		if cmd == "plug" {
			hw, err := net.ParseMAC(*mac)
			if err != nil {
				return err
			}
			p := &conf.Port{MAC: hw, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: *floor, Average: *avg}}}
			id, err := s.PlugFloor(ctx, dev, n, p, *others, &ids)
			if err != nil {
				return err
			}
			fmt.Println(id)
		} else if err := s.UnplugFloor(ctx, dev, n, uint16(*class), *others, &ids); err != nil {
			return err
		}
		if *idsFile != "" {
			t, _ := ids.MarshalText()
			return os.WriteFile(*idsFile, t, 0o644)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func bandwidth(in, out string) (*conf.Bandwidth, error) {
	i, err := rate(in)
	if err != nil {
		return nil, fmt.Errorf("-in: %w", err)
	}
	o, err := rate(out)
	if err != nil {
		return nil, fmt.Errorf("-out: %w", err)
	}
	if i == nil && o == nil {
		return nil, nil
	}
	return &conf.Bandwidth{Inbound: i, Outbound: o}, nil
}

// rate parses AVG[,PEAK[,BURST]].
func rate(s string) (*conf.Rate, error) {
	if s == "" {
		return nil, nil
	}
	var v [3]uint64
	f := strings.Split(s, ",")
	if len(f) > 3 {
		return nil, fmt.Errorf("%q: want AVG[,PEAK[,BURST]]", s)
	}
	for i, x := range f {
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		v[i] = n
	}
	return &conf.Rate{Average: v[0], Peak: v[1], Burst: v[2]}, nil
}
