// Package dnsd is vnetd's DNS server: one per network, on the network's
// bridge addresses, in place of libvirt's dnsmasq.
//
// It answers the network's own names (<dns><host>, <txt>, <srv>, static
// DHCP hosts and the hostnames of live DHCP leases) and forwards the rest
// with the rules libvirt writes into dnsmasq's configuration: per-domain
// forwarders, local-only domains and reverse zones, plain names, isolated
// networks that never use the host's resolv.conf. Forwarded answers are
// cached. Only clients of the network (and the host) are served.
//
// The zone is immutable and swapped atomically on every change (Update, a
// lease), so an update drops no query. UDP is served by readers (one per two
// CPUs, on SO_REUSEPORT sockets) that take datagrams in batches
// (recvmmsg/sendmmsg) and answer local names and cached answers straight
// from precomputed packets, without allocating; only forwarding leaves the
// reader. Everything else (TCP, unusual queries) goes through miekg/dns.
package dnsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// ErrDisabled is returned by New for a network that gets no DNS server:
// <dns enable='no'>, or no <ip> to serve on (libvirt starts no dnsmasq
// then either).
var ErrDisabled = errors.New("DNS is disabled for this network")

// LeaseView is the part of the lease store the DNS server reads.
// *leases.Store implements it.
type LeaseView interface {
	List(network string) ([]leases.Lease, error)
	WatchRelevant(network string, relevant func(leases.Changes) bool) (<-chan struct{}, func())
}

var _ LeaseView = (*leases.Store)(nil)

// Config configures the DNS server of one network.
type Config struct {
	// Network is the live definition; DNS is served on its <ip>
	// addresses.
	Network *conf.Network
	// Bridge is the network's bridge: queries are taken only from it (and
	// from the host itself), whatever address they were sent to.
	Bridge string
	// Leases gives the hostnames of DHCP clients; nil: none.
	Leases LeaseView
	// ResolvConf is the file naming the host's upstream servers; "" is
	// /etc/resolv.conf. It is re-read when it changes; a missing file
	// means no upstreams, not an error.
	ResolvConf string
	Log        *slog.Logger
}

// Server tuning.
const (
	dnsPort = 53
	// maxReaders bounds the UDP sockets (and reader goroutines) per
	// address. There is one per two CPUs: the clients (guests' vCPUs, the
	// kernel's softirq work for the bridge) need the others, and on 2 CPUs
	// two readers lose to one (bench/RESULTS.md).
	maxReaders = 4
	// maxTCPQueries and the timeouts bound what one TCP client can hold
	// (with maxTCPConns and maxTCPPerClient). Stub resolvers send one
	// query per connection and close it; a client that keeps one open
	// must ask again within tcpIdle (RFC 7766 §6.2.3 lets a server close
	// idle connections early when it must protect its resources).
	maxTCPQueries = 128
	tcpTimeout    = 2 * time.Second
	tcpIdle       = 2 * time.Second
	// rcvBuf absorbs bursts (guests booting together) that a reader
	// descheduled for a moment would otherwise lose.
	rcvBuf = 4 << 20
)

// Server is the DNS server of one network.
type Server struct {
	cfg     Config
	name    string
	log     *slog.Logger
	now     func() time.Time
	h       *handler
	readers int

	mu      sync.Mutex // guards network, leases, started, closed
	network *conf.Network
	leases  []leases.Lease // the named ones
	started bool
	closed  bool

	// named are the addresses of s.leases, read by leaseChangeMatters on
	// the lease store's goroutine.
	named atomic.Pointer[map[netip.Addr]bool]

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	udp     []*net.UDPConn
	tcp     []*dns.Server
	workers []*worker
	tcpLim  *tcpLimiter
	// kick tells the lease watcher that the zone changed, so that it
	// re-arms its expiry timer.
	kick chan struct{}
}

// New builds the zone of cfg.Network; it opens no socket (Start does).
func New(cfg Config) (*Server, error) { return newAt(cfg, time.Now) }

// newAt is New with a clock.
func newAt(cfg Config, now func() time.Time) (*Server, error) {
	n := cfg.Network
	if n == nil {
		return nil, errors.New("dns: no network definition")
	}
	if !n.DNS.Enabled() {
		return nil, fmt.Errorf("network %q: %w", n.Name, ErrDisabled)
	}
	if len(listenAddrs(n, cfg.Bridge)) == 0 {
		return nil, fmt.Errorf("network %q: no <ip> address to serve DNS on: %w", n.Name, ErrDisabled)
	}
	if cfg.Bridge == "" {
		return nil, fmt.Errorf("network %q: dns: no bridge to serve on", n.Name)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("network", n.Name, "bridge", cfg.Bridge, "service", "dns")
	s := &Server{
		cfg:     cfg,
		name:    n.Name,
		log:     log,
		now:     now,
		network: n,
		readers: min(max(runtime.GOMAXPROCS(0)/2, 1), maxReaders),
		tcpLim:  newTCPLimiter(maxTCPConns, maxTCPPerClient),
		kick:    make(chan struct{}, 1),
	}
	if cfg.Leases != nil {
		ls, err := cfg.Leases.List(n.Name)
		if err != nil {
			return nil, fmt.Errorf("network %q: dns: loading leases: %w", n.Name, err)
		}
		var named map[netip.Addr]bool
		s.leases, named = namedLeases(ls)
		s.named.Store(&named)
	}
	z, err := buildZone(n, s.leases, s.now())
	if err != nil {
		return nil, err
	}
	s.h = newHandler(z, newResolvConf(cfg.ResolvConf, log), log, now)
	return s, nil
}

// listenAddrs are the addresses DNS is served on: every <ip> of the
// network, once.
func listenAddrs(n *conf.Network, bridge string) []netip.AddrPort {
	var out []netip.AddrPort
	for i := range n.IPs {
		a := n.IPs[i].Address.Unmap()
		if !a.IsValid() {
			continue
		}
		if a.Is6() && a.IsLinkLocalUnicast() {
			a = a.WithZone(bridge)
		}
		ap := netip.AddrPortFrom(a, dnsPort)
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out
}

// Start binds UDP and TCP port 53 on every address of the network and
// serves until Close or until ctx ends. The sockets (and the connections
// to upstreams) belong to the network namespace of the calling thread
// (of the process, for upstreams). The addresses need not be up yet (an
// IPv6 address may still be in DAD): the sockets are bound with
// IP_FREEBIND. The bridge must exist: only queries arriving on it are
// served. If another process holds port 53 on one of them, Start fails
// saying so and binds nothing.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("network %q: dns: server closed", s.name)
	case s.started:
		return fmt.Errorf("network %q: dns: server already started", s.name)
	}
	addrs := listenAddrs(s.network, s.cfg.Bridge)
	bridge, err := net.InterfaceByName(s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("network %q: dns: bridge %s: %w", s.name, s.cfg.Bridge, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var listeners []net.Listener
	fail := func(err error) error {
		cancel()
		for _, l := range listeners {
			l.Close()
		}
		s.closeSockets()
		s.wg.Wait()
		s.udp, s.tcp, s.workers = nil, nil, nil
		return err
	}
	// Probe every address first: a taken port must not leave the others
	// half bound.
	for _, a := range addrs {
		if err := probeUDP(ctx, a); err != nil {
			return fail(s.bindErr(a, "udp", err))
		}
	}
	for _, a := range addrs {
		for range s.readers {
			c, err := listenUDP(ctx, a, s.readers > 1)
			if err != nil {
				return fail(s.bindErr(a, "udp", err))
			}
			s.udp = append(s.udp, c)
		}
		l, err := listenTCP(ctx, a, s.cfg.Bridge)
		if err != nil {
			return fail(s.bindErr(a, "tcp", err))
		}
		listeners = append(listeners, &limitListener{Listener: l, lim: s.tcpLim, h: s.h})
	}
	s.h.ctx = ctx
	for _, c := range s.udp {
		w := newWorker(s.h, c, ctx, &s.wg)
		w.iface = bridge.Index
		s.workers = append(s.workers, w)
		s.wg.Add(1)
		go w.run()
	}
	for len(listeners) > 0 {
		l := listeners[0]
		srv, err := s.serveTCP(ctx, l)
		if err != nil {
			return fail(fmt.Errorf("network %q: dns on %s: %w", s.name, l.Addr(), err))
		}
		listeners = listeners[1:]
		s.tcp = append(s.tcp, srv)
	}
	s.cancel = cancel
	s.started = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		s.closeSockets()
	}()
	if s.cfg.Leases != nil {
		ch, stop := s.cfg.Leases.WatchRelevant(s.name, s.leaseChangeMatters)
		s.wg.Add(1)
		go s.watch(ctx, ch, stop)
	}
	s.log.Info("DNS server started", "addresses", addrs, "records", s.h.zone.Load().records, "readers", s.readers)
	return nil
}

func (s *Server) bindErr(a netip.AddrPort, proto string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("network %q: dns on %s: port 53 on %s is taken by another process (%s): %w",
			s.name, a.Addr(), a.Addr(), proto, err)
	}
	return fmt.Errorf("network %q: dns on %s: cannot listen on %s port 53: %w", s.name, a.Addr(), proto, err)
}

// serveTCP serves one TCP listener with miekg/dns (framing, pipelining,
// idle timeouts) and returns once it accepts.
func (s *Server) serveTCP(ctx context.Context, l net.Listener) (*dns.Server, error) {
	started := make(chan struct{})
	srv := &dns.Server{
		Listener:          l,
		Net:               "tcp",
		Handler:           s.h,
		ReadTimeout:       tcpTimeout,
		WriteTimeout:      tcpTimeout,
		IdleTimeout:       func() time.Duration { return tcpIdle },
		MaxTCPQueries:     maxTCPQueries,
		NotifyStartedFunc: func() { close(started) },
	}
	errc := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := srv.ActivateAndServe()
		if err != nil && ctx.Err() == nil {
			s.log.Error("DNS over TCP stopped", "address", l.Addr(), "err", err)
		}
		errc <- err
	}()
	select {
	case <-started:
		return srv, nil
	case err := <-errc:
		return nil, fmt.Errorf("serving TCP: %w", err)
	}
}

// closeSockets stops the readers and the TCP servers.
func (s *Server) closeSockets() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, srv := range s.tcp {
		sctx, cancel := context.WithTimeout(context.Background(), tcpTimeout)
		srv.ShutdownContext(sctx)
		cancel()
	}
}

// Update switches to a new definition of the network: the zone is rebuilt
// and swapped in at once (queries in flight finish with the old one), and
// the cache is emptied since the forwarding rules may have changed. The
// sockets stay: a change of addresses needs a restart of the network, as
// in libvirt.
func (s *Server) Update(n *conf.Network) error {
	if n == nil {
		return errors.New("dns: no network definition")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z, err := buildZone(n, s.leases, s.now())
	if err != nil {
		return err
	}
	if s.started && !slices.Equal(listenAddrs(n, s.cfg.Bridge), listenAddrs(s.network, s.cfg.Bridge)) {
		s.log.Warn("DNS keeps serving the old addresses until the network restarts")
	}
	s.network = n
	s.h.zone.Store(z)
	s.h.cache.flush()
	s.kickWatcher()
	s.log.Info("DNS zone updated", "records", z.records)
	return nil
}

func (s *Server) kickWatcher() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops the server: no query is answered once it returns.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.log.Info("DNS server stopped")
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{Queries: map[string]uint64{}, Responses: map[string]uint64{}}
	st.add(&s.h.st)
	s.mu.Lock()
	workers := s.workers
	s.mu.Unlock()
	for _, w := range workers {
		st.add(&w.st)
	}
	st.CacheEntries = s.h.cache.len()
	st.TCPConnections = s.tcpLim.open()
	return st
}

// watch keeps lease hostnames current: a rebuild after every change of the
// network's leases, and when the earliest lease in the zone expires.
func (s *Server) watch(ctx context.Context, ch <-chan struct{}, stop func()) {
	defer s.wg.Done()
	defer stop()
	// A change between New's List and Watch would otherwise be missed.
	s.reloadLeases()
	lastReload := time.Now()
	var pending <-chan time.Time // a reload held back by leaseReloadMin
	reload := func() {
		pending = nil
		s.reloadLeases()
		lastReload = time.Now()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Stop()
		if next := s.h.zone.Load().nextExpiry; !next.IsZero() {
			// Expired means strictly before now: wake just after.
			timer.Reset(max(next.Sub(s.now())+time.Millisecond, 0))
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				ch = nil // the store closed: keep expiring what we have
				continue
			}
			if wait := leaseReloadMin - time.Since(lastReload); wait > 0 {
				if pending == nil {
					pending = time.After(wait)
				}
				continue
			}
			reload()
		case <-pending:
			reload()
		case <-timer.C:
			s.mu.Lock()
			s.rebuildLocked()
			s.mu.Unlock()
		case <-s.kick:
		}
	}
}

// leaseReloadMin spaces the re-reads of the leases when named clients
// come and go faster than that; their names appear at most this late.
const leaseReloadMin = 200 * time.Millisecond

// leaseChangeMatters reports whether a committed lease change can change
// the zone: a lease with a hostname, or one replacing or deleting a named
// lease. A busy DHCP server's other commits then cost the DNS server
// nothing. It runs on the lease store's committer.
func (s *Server) leaseChangeMatters(c leases.Changes) bool {
	named := s.named.Load()
	for _, l := range c.Put {
		if l.Network == s.name && (l.Hostname != "" || (named != nil && (*named)[l.IP])) {
			return true
		}
	}
	if named == nil {
		return false
	}
	for _, k := range c.Delete {
		if k.Network == s.name && (*named)[k.IP] {
			return true
		}
	}
	return false
}

func (s *Server) reloadLeases() {
	ls, err := s.cfg.Leases.List(s.name)
	if err != nil {
		s.h.lim.Log(s.log, slog.LevelWarn, "cannot read leases; lease hostnames not updated", "err", err)
		return
	}
	s.setLeases(ls)
}

// setLeases rebuilds the zone with the named leases of ls.
func (s *Server) setLeases(ls []leases.Lease) {
	kept, named := namedLeases(ls)
	s.named.Store(&named)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases = kept
	s.rebuildLocked()
}

// namedLeases are the leases of ls with a hostname (the others add nothing
// to the zone), and their addresses.
func namedLeases(ls []leases.Lease) ([]leases.Lease, map[netip.Addr]bool) {
	kept := ls[:0]
	named := map[netip.Addr]bool{}
	for _, l := range ls {
		if l.Hostname != "" {
			kept = append(kept, l)
			named[l.IP] = true
		}
	}
	return slices.Clip(kept), named
}

func (s *Server) rebuildLocked() {
	z, err := buildZone(s.network, s.leases, s.now())
	if err != nil {
		s.log.Warn("cannot rebuild DNS zone", "err", err)
		return
	}
	s.h.zone.Store(z)
	s.log.Debug("DNS zone rebuilt", "records", z.records)
}
