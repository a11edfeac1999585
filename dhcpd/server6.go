package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// Ports and sizes of the DHCPv6 server.
const (
	serverPort6 = 547
	clientPort6 = 546
	// queue6 bounds the messages waiting for a worker; beyond that they
	// are dropped and counted: clients retransmit. Workers never wait for
	// the disk (replies go out from the store's completions), so one per
	// CPU is enough.
	queue6 = 1024
	// sweepEvery6 is how often expired leases are removed.
	sweepEvery6 = 30 * time.Second
)

// Config6 configures the DHCPv6 server of one network.
type Config6 struct {
	// Network is the live definition; the server serves its IPv6 <ip> that
	// has <dhcp>.
	Network *conf.Network
	// Bridge is the interface to serve on.
	Bridge string
	// ServerDUID is the stable server DUID (the daemon keeps it in its
	// state directory). Nil: a DUID-LL of the bridge's MAC address.
	ServerDUID []byte
	Store      LeaseStore
	Log        *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Stats6 counts what the server did since Start.
type Stats6 struct {
	Received     uint64 // datagrams read
	Malformed    uint64 // undecodable or breaking the rules of their type
	Ignored      uint64 // for another server, or not a client message
	Overflow     uint64 // dropped because every worker was busy
	Solicits     uint64
	Requests     uint64
	Renews       uint64
	Rebinds      uint64
	Confirms     uint64
	Releases     uint64
	Declines     uint64
	InfoRequests uint64
	Advertises   uint64
	Replies      uint64
	NoAddrsAvail uint64 // answers that had no address for the client
	Commits      uint64 // leases made durable
	Removals     uint64 // leases removed from the store
	StoreErrors  uint64 // failed Put or Delete (the answer is not sent)
	SendErrors   uint64
	Bound        int // live leases now
	PoolSize     int // addresses the server can lease (Handler6.PoolSize)
}

type counters6 struct {
	received, malformed, ignored, overflow          atomic.Uint64
	solicits, requests, renews, rebinds, confirms   atomic.Uint64
	releases, declines, infoRequests                atomic.Uint64
	advertises, replies, noAddrs, commits, removals atomic.Uint64
	storeErrors, sendErrors                         atomic.Uint64
}

// Server6 is the DHCPv6 server of one network's bridge.
type Server6 struct {
	cfg Config6
	log *slog.Logger
	now func() time.Time

	// mu guards h, network, started, closed; it serialises Handle and the
	// submission of its writes (decide).
	mu      sync.Mutex
	h       *Handler6
	network *conf.Network
	started bool
	closed  bool

	st counters6
	// inflight counts store writes not yet completed; done holds their
	// completions for the replier.
	inflight sync.WaitGroup
	done     queue[completion6]

	conn   *net.UDPConn
	queue  chan packet6
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type packet6 struct {
	data []byte
	peer netip.Addr
}

// New6 checks cfg; the server does nothing before Start.
func New6(cfg Config6) (*Server6, error) {
	if cfg.Network == nil {
		return nil, errors.New("dhcpv6: no network")
	}
	if cfg.Bridge == "" {
		return nil, fmt.Errorf("dhcpv6: network %s: no bridge", cfg.Network.Name)
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("dhcpv6: network %s: no lease store", cfg.Network.Name)
	}
	if _, err := netConf6From(cfg.Network); err != nil {
		return nil, fmt.Errorf("dhcpv6: %w", err)
	}
	if cfg.ServerDUID != nil {
		if _, err := dhcpv6.DUIDFromBytes(cfg.ServerDUID); err != nil || len(cfg.ServerDUID) < 3 {
			return nil, fmt.Errorf("dhcpv6: network %s: server DUID %s is not a DUID", cfg.Network.Name, FormatDUID6(cfg.ServerDUID))
		}
	}
	s := &Server6{cfg: cfg, network: cfg.Network, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	s.log = log.With("network", cfg.Network.Name, "bridge", cfg.Bridge, "server", "dhcpv6")
	return s, nil
}

// Start loads the network's stored leases and serves on UDP [::]:547 of the
// bridge (joined to ff02::1:2) until Close or until ctx ends. The socket
// belongs to the network namespace of the calling thread.
func (s *Server6) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dhcpv6: server closed")
	}
	if s.started {
		return errors.New("dhcpv6: server already started")
	}
	ifi, err := bridgeInterface(s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("dhcpv6: network %s: bridge %s: %w", s.network.Name, s.cfg.Bridge, err)
	}
	duid := s.cfg.ServerDUID
	if duid == nil {
		if len(ifi.HardwareAddr) == 0 {
			return fmt.Errorf("dhcpv6: network %s: bridge %s has no MAC address for a server DUID", s.network.Name, s.cfg.Bridge)
		}
		duid = (&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: ifi.HardwareAddr}).ToBytes()
	}
	h, err := NewHandler6(s.network, duid)
	if err != nil {
		return fmt.Errorf("dhcpv6: %w", err)
	}
	stored, err := s.cfg.Store.List(s.network.Name)
	if err != nil {
		return fmt.Errorf("dhcpv6: network %s: loading leases: %w", s.network.Name, err)
	}
	loaded := h.Load(stored, s.now())
	conn, err := listen6(ctx, s.cfg.Bridge, ifi.Index)
	if err != nil {
		return fmt.Errorf("dhcpv6: network %s: %w", s.network.Name, err)
	}
	s.h, s.conn = h, conn
	s.queue = make(chan packet6, queue6)
	ctx, s.cancel = context.WithCancel(ctx)
	s.started = true
	s.done.wake = make(chan struct{}, 1)
	var workers sync.WaitGroup
	workers.Add(3 + runtime.GOMAXPROCS(0))
	go func() {
		defer workers.Done()
		<-ctx.Done()
		conn.Close()
	}()
	go s.read(ctx, &workers)
	go s.sweep(ctx, &workers)
	for range runtime.GOMAXPROCS(0) {
		go s.work(ctx, &workers)
	}
	s.wg.Go(func() {
		workers.Wait()
		// Every write is submitted; let the last completions out.
		s.inflight.Wait()
		s.done.close()
	})
	s.wg.Go(s.reply)
	s.log.Info("DHCPv6 server started", "duid", FormatDUID6(duid), "leases", loaded)
	return nil
}

// Update switches to a new definition of the network. Bindings are kept;
// those no longer appropriate are taken back when their clients renew.
func (s *Server6) Update(n *conf.Network) error {
	if _, err := netConf6From(n); err != nil {
		return fmt.Errorf("dhcpv6: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.network = n
	if s.h != nil {
		if err := s.h.Update(n); err != nil {
			return fmt.Errorf("dhcpv6: %w", err)
		}
	}
	return nil
}

// Close stops the server: no message is answered once it returns. Leases
// stay in the store.
func (s *Server6) Close() error {
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
	s.log.Info("DHCPv6 server stopped")
	return nil
}

// Stats returns the counters.
func (s *Server6) Stats() Stats6 {
	st := &s.st
	out := Stats6{
		Received: st.received.Load(), Malformed: st.malformed.Load(), Ignored: st.ignored.Load(),
		Overflow: st.overflow.Load(), Solicits: st.solicits.Load(), Requests: st.requests.Load(),
		Renews: st.renews.Load(), Rebinds: st.rebinds.Load(), Confirms: st.confirms.Load(),
		Releases: st.releases.Load(), Declines: st.declines.Load(), InfoRequests: st.infoRequests.Load(),
		Advertises: st.advertises.Load(), Replies: st.replies.Load(), NoAddrsAvail: st.noAddrs.Load(),
		Commits: st.commits.Load(), Removals: st.removals.Load(), StoreErrors: st.storeErrors.Load(),
		SendErrors: st.sendErrors.Load(),
	}
	s.mu.Lock()
	if s.h != nil {
		out.Bound, out.PoolSize = s.h.Bound(s.now()), s.h.PoolSize()
	}
	s.mu.Unlock()
	return out
}

func (s *Server6) read(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(s.queue)
	// A jumbo frame's worth: real DHCPv6 messages are a few hundred bytes,
	// a longer datagram is cut and dropped as malformed, and there is one
	// such buffer per network.
	buf := make([]byte, 9216)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("DHCPv6 read failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.st.received.Add(1)
		p := packet6{data: append([]byte(nil), buf[:n]...), peer: from.Addr().WithZone("")}
		select {
		case s.queue <- p:
		default:
			s.st.overflow.Add(1)
		}
	}
}

func (s *Server6) work(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for p := range s.queue {
		if ctx.Err() != nil {
			continue
		}
		s.serve(ctx, p)
	}
}

// serve handles one datagram: decode, decide, persist, and only then answer.
func (s *Server6) serve(ctx context.Context, p packet6) {
	defer func() {
		// The handler and the codec are fuzzed; this is the last line of
		// defence against a crafted packet taking the daemon down.
		if r := recover(); r != nil {
			s.st.malformed.Add(1)
			s.log.Error("DHCPv6 message handling panicked", "peer", p.peer, "panic", r)
		}
	}()
	if len(p.data) > 0 && (dhcpv6.MessageType(p.data[0]) == dhcpv6.MessageTypeRelayForward || dhcpv6.MessageType(p.data[0]) == dhcpv6.MessageTypeRelayReply) {
		// No relay agents on a libvirt bridge.
		s.st.ignored.Add(1)
		return
	}
	msg, err := dhcpv6.MessageFromBytes(p.data)
	if err != nil {
		s.st.malformed.Add(1)
		return
	}
	s.countIn(msg.MessageType)
	c, err := s.decide(msg, p.peer)
	switch {
	case errors.Is(err, ErrMalformed6):
		s.st.malformed.Add(1)
	case err != nil:
		s.st.ignored.Add(1)
	case c != nil:
		s.answer(c)
	}
}

// decide handles msg and submits its store writes, under s.mu so that the
// store commits them in decision order (a Release's Delete never lands
// after the next client's Put of the same address). It returns the answer
// to send now when there is nothing to store; otherwise the answer goes
// out from the write's completion.
func (s *Server6) decide(msg *dhcpv6.Message, peer netip.Addr) (*completion6, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil
	}
	resp, commits, releases, err := s.h.Handle(msg, peer, s.now())
	if err != nil {
		return nil, err
	}
	c := completion6{msg: msg, resp: resp, peer: peer, commits: commits, releases: releases}
	if len(commits) == 0 && len(releases) == 0 {
		return &c, nil
	}
	ch := leases.Changes{Put: commits}
	for _, ip := range releases {
		ch.Delete = append(ch.Delete, leases.Key{Network: s.h.c.network, IP: ip})
	}
	s.inflight.Add(1)
	s.cfg.Store.Apply(ch, func(err error) {
		c.err = err
		s.done.push(c)
		s.inflight.Done()
	})
	return nil, nil
}

// completion6 is a message whose store writes finished.
type completion6 struct {
	msg      *dhcpv6.Message
	resp     *dhcpv6.Message
	peer     netip.Addr
	commits  []leases.Lease
	releases []netip.Addr
	err      error
}

// reply answers the messages whose leases are durable (or reports why
// not), in the order they were stored.
func (s *Server6) reply() {
	var batch []completion6
	pace := newPacer()
	for {
		batch = s.done.take(batch)
		if batch == nil {
			return
		}
		pace.spread(len(batch), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				s.complete(&batch[i])
			}
		})
		clear(batch)
	}
}

func (s *Server6) complete(c *completion6) {
	if c.err != nil {
		// Not durable, not acknowledged: the client retransmits.
		s.st.storeErrors.Add(1)
		s.log.Error("storing DHCPv6 leases failed, not replying", "type", c.msg.MessageType.String(), "peer", c.peer, "err", c.err)
		return
	}
	for _, ip := range c.releases {
		s.st.removals.Add(1)
		s.log.Info("DHCPv6 lease removed", "ip", ip, "type", c.msg.MessageType.String())
	}
	for _, l := range c.commits {
		s.st.commits.Add(1)
		s.log.Info("DHCPv6 lease", "ip", l.IP, "duid", l.DUID, "iaid", l.IAID, "hostname", l.Hostname, "expiry", l.Expiry, "type", c.msg.MessageType.String())
	}
	s.answer(c)
}

// answer sends the reply, if any.
func (s *Server6) answer(c *completion6) {
	resp := c.resp
	if resp == nil {
		return
	}
	if resp.MessageType == dhcpv6.MessageTypeAdvertise {
		s.st.advertises.Add(1)
	} else {
		s.st.replies.Add(1)
	}
	if noAddrs6(resp) {
		s.st.noAddrs.Add(1)
	}
	// The zone is the bridge's name, not its index: the net package
	// resolves an unknown zone name by re-reading every interface from
	// the kernel, which on a busy server cost a quarter of the CPU.
	to := netip.AddrPortFrom(c.peer.WithZone(s.cfg.Bridge), clientPort6)
	if _, err := s.conn.WriteToUDPAddrPort(resp.ToBytes(), to); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			s.st.sendErrors.Add(1)
			s.log.Warn("DHCPv6 send failed", "peer", c.peer, "err", err)
		}
	}
}

func (s *Server6) countIn(t dhcpv6.MessageType) {
	st := &s.st
	switch t {
	case dhcpv6.MessageTypeSolicit:
		st.solicits.Add(1)
	case dhcpv6.MessageTypeRequest:
		st.requests.Add(1)
	case dhcpv6.MessageTypeRenew:
		st.renews.Add(1)
	case dhcpv6.MessageTypeRebind:
		st.rebinds.Add(1)
	case dhcpv6.MessageTypeConfirm:
		st.confirms.Add(1)
	case dhcpv6.MessageTypeRelease:
		st.releases.Add(1)
	case dhcpv6.MessageTypeDecline:
		st.declines.Add(1)
	case dhcpv6.MessageTypeInformationRequest:
		st.infoRequests.Add(1)
	}
}

// noAddrs6 reports whether an answer says NoAddrsAvail, at the top or in
// an IA_NA.
func noAddrs6(m *dhcpv6.Message) bool {
	if st := m.Options.Status(); st != nil && st.StatusCode == iana.StatusNoAddrsAvail {
		return true
	}
	for _, ia := range m.Options.IANA() {
		if st := ia.Options.Status(); st != nil && st.StatusCode == iana.StatusNoAddrsAvail {
			return true
		}
	}
	return false
}

// sweep removes expired leases from the pool and the store.
func (s *Server6) sweep(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(sweepEvery6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		name := s.h.c.network
		for _, ip := range s.h.Sweep(s.now()) {
			s.inflight.Add(1)
			s.cfg.Store.Apply(leases.Changes{Delete: []leases.Key{{Network: name, IP: ip}}}, func(err error) {
				defer s.inflight.Done()
				if err != nil {
					s.st.storeErrors.Add(1)
					s.log.Error("removing expired DHCPv6 lease failed", "ip", ip, "err", err)
					return
				}
				s.st.removals.Add(1)
				s.log.Info("DHCPv6 lease expired", "ip", ip)
			})
		}
		s.mu.Unlock()
	}
}
