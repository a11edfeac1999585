// Command vnetd serves libvirt-style virtual networks: bridges, addresses,
// routes and NAT through netlink and nftables, managed over a control socket
// (vnetctl). It manages the network namespace it runs in.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/vnetd/vnetd/daemon"
)

// Garbage-collector defaults, used unless GOGC / GOMEMLIMIT are set. The
// DHCP and DNS servers allocate per packet: Go's default (collect at 2x the
// live heap) then runs the collector many times a second under load, and
// its pauses turn into bursts of replies that overflow clients' receive
// buffers (bench/RESULTS.md). Collecting at 3x keeps that rare and a large
// daemon lean (256 networks with 1000 ports live in about 30 MiB of heap,
// bench/scale.sh). The soft limit is only a ceiling: a DHCP server under
// 16000 clients/s holds 100 MiB of leases and requests in flight, and a
// limit below that (96 MiB was tried) makes the collector run without
// pause and the server drop a third of the requests.
const (
	gcPercent   = 200
	memoryLimit = 256 << 20
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	opt := daemon.Options{}
	flag.StringVar(&opt.ConfigDir, "config-dir", "/etc/vnetd", "persistent network definitions")
	flag.StringVar(&opt.StateDir, "state-dir", "/var/lib/vnetd", "live state (leases, ports, running networks)")
	flag.StringVar(&opt.RunDir, "run-dir", "/run/vnetd", "lock file; one vnetd per run dir")
	flag.StringVar(&opt.Socket, "socket", "/run/vnetd/vnetd.sock", "control API socket")
	flag.StringVar(&opt.SocketGroup, "socket-group", "", "group allowed to use the socket (mode 0660); default root only (0600)")
	flag.StringVar(&opt.OVSDBSocket, "ovsdb-socket", "/run/openvswitch/db.sock", "Open vSwitch database socket (used only by networks with <virtualport type='openvswitch'>)")
	flag.DurationVar(&opt.ReconcileInterval, "reconcile-interval", 0, "how often firewall rules are checked besides nftables events (default 5s)")
	flag.StringVar(&opt.SystemBus, "system-bus", "", "D-Bus address of firewalld and systemd-resolved (e.g. unix:path=/run/dbus/system_bus_socket); default the system bus, if the host has one")
	flag.StringVar(&opt.MetricsListen, "metrics-listen", "", "TCP address (e.g. 127.0.0.1:9717) to serve Prometheus /metrics on; default none (/metrics is always on the control socket)")
	flag.StringVar(&opt.TFTPRootBase, "tftp-root-base", "", "directory every network's <tftp root> must resolve to or below; net-define and net-start refuse the others (default any directory)")
	logFormat := flag.String("log-format", "text", "text or json")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "vnetd: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "vnetd: --log-level: %v\n", err)
		os.Exit(2)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, hopts)
	default:
		fmt.Fprintf(os.Stderr, "vnetd: --log-format must be text or json, not %q\n", *logFormat)
		os.Exit(2)
	}
	log := slog.New(h)
	opt.Log = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP re-reads the definitions (systemctl reload vnetd).
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	opt.Reload = reload
	host, fw, closeHost, err := daemon.NewHost(log)
	if err != nil {
		log.Error("vnetd cannot manage this host", "err", err)
		os.Exit(1)
	}
	defer closeHost()
	if err := daemon.Run(ctx, opt, host, fw); err != nil {
		log.Error("vnetd failed", "err", err)
		os.Exit(1)
	}
}
