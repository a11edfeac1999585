// Command dnsbench runs pieces of bench/dns.sh: vnetd's DNS server for one
// network, started on its bridge in the current network namespace (until
// the daemon serves it itself), or a trivial upstream server.
//
//	dnsbench -network net.xml -bridge br0 -resolv resolv.conf
//	dnsbench -upstream 10.202.0.2
//
// It prints "ready" once it serves, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dnsd"
)

func main() {
	network := flag.String("network", "", "network XML `file` to serve")
	bridge := flag.String("bridge", "", "the network's bridge")
	resolv := flag.String("resolv", "", "resolv.conf `file` naming the upstream servers")
	upstream := flag.String("upstream", "", "serve as upstream on `address` port 53 instead: every A query gets that address, TTL 3600")
	verbose := flag.Bool("v", false, "log at info level (default: warnings only)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the serving to `file`")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var err error
	if *upstream != "" {
		err = serveUpstream(ctx, *upstream)
	} else {
		err = serveNetwork(ctx, log, *network, *bridge, *resolv)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func serveNetwork(ctx context.Context, log *slog.Logger, file, bridge, resolv string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	n, err := conf.Parse(data)
	if err != nil {
		return err
	}
	s, err := dnsd.New(dnsd.Config{Network: n, Bridge: bridge, ResolvConf: resolv, Log: log})
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	st := s.Stats()
	s.Close()
	fmt.Fprintf(os.Stderr, "dnsbench: queries %v responses %v cache hits %d misses %d forwarded %d malformed %d overflow %d\n",
		st.Queries, st.Responses, st.CacheHits, st.CacheMisses, st.Forwarded, st.Malformed, st.Overflow)
	return nil
}

func serveUpstream(ctx context.Context, addr string) error {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() == nil {
		return fmt.Errorf("-upstream: %q is not an IPv4 address", addr)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: ip}}
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(1232, opt.Do())
		}
		w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	var servers []*dns.Server
	for _, proto := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: net.JoinHostPort(addr, "53"), Net: proto, Handler: h}
		servers = append(servers, srv)
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { errc <- srv.ListenAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			return err
		}
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	for _, srv := range servers {
		srv.Shutdown()
	}
	return nil
}
