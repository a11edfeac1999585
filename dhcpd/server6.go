package dhcpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/ratelog"
	"github.com/vnetd/vnetd/leases"
)

// Ports and sizes of the DHCPv6 server.
const (
	serverPort6 = 547
	clientPort6 = 546
	// readBatch6 is the most datagrams read before they are served.
	readBatch6 = 32
	// sweepEvery6 is how often expired leases are removed.
	sweepEvery6 = 30 * time.Second
	// maxPacket6 is a jumbo frame's worth: real DHCPv6 messages are a few
	// hundred bytes, a longer datagram is cut and dropped as malformed.
	maxPacket6 = 9216
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
	Overflow     uint64 // always 0: requests wait in the socket's buffer, and are lost there when the server is overloaded
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
	Panic        uint64 // messages whose handling panicked (a bug), dropped
	Bound        int    // live leases now
	PoolSize     int    // addresses the server can lease (Handler6.PoolSize)
}

type counters6 struct {
	received, malformed, ignored, overflow          atomic.Uint64
	solicits, requests, renews, rebinds, confirms   atomic.Uint64
	releases, declines, infoRequests                atomic.Uint64
	advertises, replies, noAddrs, commits, removals atomic.Uint64
	storeErrors, sendErrors, panics                 atomic.Uint64
}

// Server6 is the DHCPv6 server of one network's bridge. One goroutine
// reads the datagrams in order (so a client's messages keep theirs),
// decodes them, decides under mu, submits the leases to the store and
// sends the answers that need no store write; the replier sends the others
// once they are durable.
type Server6 struct {
	cfg Config6
	log *slog.Logger
	// rlog limits the lines a client can cause, one per packet.
	rlog ratelog.Limiter
	now  func() time.Time

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

	conn *net.UDPConn
	// newSender makes a sender of many answers at once for one goroutine
	// (nil, or returning nil: each with its own write on conn). The
	// replier and the serving loop each have one, in their batch6.
	newSender func() func([]out6) []error
	replies   batch6 // the replier's
	cancel    context.CancelFunc
	wg        sync.WaitGroup
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
	link, err := openLink6(s.cfg.Bridge, ifi.Index)
	if err != nil {
		// Only clients the kernel has no route to go unanswered.
		s.log.Warn("DHCPv6 cannot answer clients the host has no route to", "err", err)
	}
	s.h, s.conn = h, conn
	s.newSender = func() func([]out6) []error { return newSender6(conn, ifi.Index, link) }
	s.setup()
	ctx, s.cancel = context.WithCancel(ctx)
	s.started = true
	var workers sync.WaitGroup
	workers.Add(3)
	go func() {
		defer workers.Done()
		<-ctx.Done()
		conn.Close()
	}()
	go s.serveLoop(ctx, &workers)
	go s.sweep(ctx, &workers)
	s.wg.Go(func() {
		workers.Wait()
		// Every write is submitted; let the last completions out.
		s.inflight.Wait()
		s.done.close()
	})
	s.wg.Go(func() {
		s.reply()
		// The replier is the last to send: the serving loop ended first.
		link.close()
	})
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
		SendErrors: st.sendErrors.Load(), Panic: st.panics.Load(),
	}
	s.mu.Lock()
	if s.h != nil {
		out.Bound, out.PoolSize = s.h.Bound(s.now()), s.h.PoolSize()
	}
	s.mu.Unlock()
	return out
}

// setup makes the replier's queue and batch (Start, and benchmarks that
// drive the server without sockets).
func (s *Server6) setup() {
	s.done.wake = make(chan struct{}, 1)
	s.replies = batch6{send: s.sender()}
}

// sender is a new sender of many answers at once, or nil.
func (s *Server6) sender() func([]out6) []error {
	if s.newSender == nil {
		return nil
	}
	return s.newSender()
}

// serveLoop reads, decides and answers in one goroutine (datagramBatch
// says why): the datagrams waiting on the socket are served in order, so
// a client's messages keep theirs, and the answers that need no store
// write go out together.
func (s *Server6) serveLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	in := newDatagramBatch(s.conn, readBatch6, maxPacket6)
	var buf []byte // only without a datagramBatch
	if in == nil {
		buf = make([]byte, maxPacket6)
	}
	w := &worker6{batch: batch6{send: s.sender()}}
	var slab slab6
	var batch []packet6
	for {
		var n, size int
		var from netip.AddrPort
		var err error
		if in != nil {
			n, err = in.read()
		} else {
			size, from, err = s.conn.ReadFromUDPAddrPort(buf)
			n = 1
		}
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
		for i := range n {
			d, peer := buf[:size], from.Addr()
			if in != nil {
				d, peer = in.datagram(i)
			}
			s.st.received.Add(1)
			// A copy: a message whose lease is being stored is answered
			// after the commit.
			batch = append(batch, packet6{data: slab.copy(d), peer: peer.Unmap().WithZone("")})
		}
		s.round(ctx, w, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// worker6 is what the serving loop reuses from one message to the next.
type worker6 struct {
	m     msg6
	out   slab6  // the answers' bytes
	batch batch6 // answers sent together at the end of a round
}

// round serves the datagrams of one read.
func (s *Server6) round(ctx context.Context, w *worker6, batch []packet6) {
	for _, p := range batch {
		if ctx.Err() != nil {
			break
		}
		s.serveIn(ctx, w, p)
	}
	s.flush(&w.batch)
}

// serveIn handles one datagram: decode, decide, persist, and only then
// answer. Answers that need no store write are queued in w's batch.
func (s *Server6) serveIn(ctx context.Context, w *worker6, p packet6) {
	defer func() {
		// The handler and the codec are fuzzed; this is the last line of
		// defence against a crafted packet taking the daemon down.
		if r := recover(); r != nil {
			s.st.panics.Add(1)
			logPanic(s.log, &s.rlog, "DHCPv6 message handling panicked", r, "peer", p.peer)
		}
	}()
	if len(p.data) > 0 && (dhcpv6.MessageType(p.data[0]) == dhcpv6.MessageTypeRelayForward || dhcpv6.MessageType(p.data[0]) == dhcpv6.MessageTypeRelayReply) {
		// No relay agents on a libvirt bridge.
		s.st.ignored.Add(1)
		return
	}
	if err := w.m.decode(p.data); err != nil {
		s.st.malformed.Add(1)
		return
	}
	s.countIn(w.m.typ)
	c, now, err := s.decide(w, p.peer)
	switch {
	case errors.Is(err, ErrMalformed6):
		s.st.malformed.Add(1)
	case err != nil:
		s.st.ignored.Add(1)
	case now:
		s.queueAnswer(&w.batch, &c)
	}
}

// decide handles w.m and submits its store writes, under s.mu so that the
// store commits them in decision order (a Release's Delete never lands
// after the next client's Put of the same address). When there is nothing
// to store it returns the answer to send now (now true); otherwise the
// answer goes out from the write's completion.
func (s *Server6) decide(w *worker6, peer netip.Addr) (completion6, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return completion6{}, false, nil
	}
	a, err := s.h.handle(&w.m, peer, s.now(), w.out.room())
	if err != nil {
		return completion6{}, false, err
	}
	c := completion6{typ: w.m.typ, resp: w.out.keep(a.resp), respType: a.typ, noAddrs: a.noAddrs,
		peer: peer, commits: a.commits, releases: a.releases}
	if len(c.commits) == 0 && len(c.releases) == 0 {
		return c, true, nil
	}
	ch := leases.Changes{Put: c.commits}
	for _, ip := range c.releases {
		ch.Delete = append(ch.Delete, leases.Key{Network: s.h.c.network, IP: ip})
	}
	s.inflight.Add(1)
	// c is never assigned again: the closure holds a copy (one
	// allocation, where a pointer to c would be two).
	s.cfg.Store.Apply(ch, func(err error) { s.stored(c, err) })
	return completion6{}, false, nil
}

// stored hands a finished store write to the replier.
func (s *Server6) stored(c completion6, err error) {
	c.err = err
	s.done.push(c)
	s.inflight.Done()
}

// completion6 is a message whose store writes finished.
type completion6 struct {
	typ      dhcpv6.MessageType // of the client's message
	resp     []byte             // the answer; nil: none
	respType dhcpv6.MessageType
	noAddrs  bool // resp says NoAddrsAvail
	peer     netip.Addr
	commits  []leases.Lease
	releases []netip.Addr
	err      error
}

// reply answers the messages whose leases are durable (or reports why
// not), in the order they were stored, each paced chunk with one send.
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
				if c := &batch[i]; s.settled(c) {
					s.queueAnswer(&s.replies, c)
				}
			}
			s.flush(&s.replies)
		})
		clear(batch)
	}
}

// complete answers one completion at once.
// settled counts and logs a completion's store outcome and reports
// whether it is to be answered: what is not durable is not acknowledged.
func (s *Server6) settled(c *completion6) bool {
	ctx := context.Background()
	if c.err != nil {
		// Not durable, not acknowledged: the client retransmits.
		s.st.storeErrors.Add(1)
		s.rlog.Log(s.log, slog.LevelError, "storing DHCPv6 leases failed, not replying", "type", c.typ.String(), "peer", c.peer, "err", c.err)
		return false
	}
	s.st.removals.Add(uint64(len(c.releases)))
	s.st.commits.Add(uint64(len(c.commits)))
	// Guarded: the arguments alone cost allocations per lease.
	if s.log.Enabled(ctx, slog.LevelInfo) {
		for _, ip := range c.releases {
			s.log.Info("DHCPv6 lease removed", "ip", ip, "type", c.typ.String())
		}
		for _, l := range c.commits {
			s.log.Info("DHCPv6 lease", "ip", l.IP, "duid", l.DUID, "iaid", l.IAID, "hostname", l.Hostname, "expiry", l.Expiry, "type", c.typ.String())
		}
	}
	return true
}

// out6 is an answer ready to go to a client's address.
type out6 struct {
	b  []byte
	to netip.Addr
}

// batch6 collects one goroutine's answers so that a chunk of them goes out
// with one sendmmsg instead of a sendto each (a tenth less CPU per answer
// sent over the loopback, BenchmarkSend6; on DHCPv4 the sends were a fifth
// of the server's CPU).
type batch6 struct {
	send func([]out6) []error // nil: one by one
	outs []out6
}

// queueAnswer counts c's answer, if any, and adds it to b, which it sends
// when it holds a chunk; with nil b (or no batch sender) it sends it now.
func (s *Server6) queueAnswer(b *batch6, c *completion6) {
	if c.resp == nil {
		return
	}
	if c.respType == dhcpv6.MessageTypeAdvertise {
		s.st.advertises.Add(1)
	} else {
		s.st.replies.Add(1)
	}
	if c.noAddrs {
		s.st.noAddrs.Add(1)
	}
	if b == nil || b.send == nil {
		// The zone is the bridge's name, not its index: the net package
		// resolves an unknown zone name by re-reading every interface
		// from the kernel, which on a busy server cost a quarter of the
		// CPU.
		to := netip.AddrPortFrom(c.peer.WithZone(s.cfg.Bridge), clientPort6)
		_, err := s.conn.WriteToUDPAddrPort(c.resp, to)
		s.sent(c.peer, err)
		return
	}
	b.outs = append(b.outs, out6{b: c.resp, to: c.peer})
	if len(b.outs) >= paceChunk {
		s.flush(b)
	}
}

// flush sends what b holds.
func (s *Server6) flush(b *batch6) {
	if len(b.outs) == 0 {
		return
	}
	for i, err := range b.send(b.outs) {
		s.sent(b.outs[i].to, err)
	}
	clear(b.outs)
	b.outs = b.outs[:0]
}

// sent accounts for the outcome of sending an answer to peer.
func (s *Server6) sent(peer netip.Addr, err error) {
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.st.sendErrors.Add(1)
		s.rlog.Log(s.log, slog.LevelWarn, "DHCPv6 send failed", "peer", peer, "err", err)
	}
}

// slab6 hands out pieces of larger buffers, for the datagrams the serving
// loop copies and the answers it encodes: one allocation for dozens of
// them. A piece is written once; the collector frees a buffer when none of
// its pieces is referenced any more. The buffers are small because each
// server keeps one per goroutine, and there may be hundreds of networks.
type slab6 struct{ buf []byte }

const (
	slabSize6 = 8 << 10
	// minRoom6 is the room an answer starts in; a larger one grows into
	// a buffer of its own.
	minRoom6 = 512
)

// copy returns a piece holding b.
func (s *slab6) copy(b []byte) []byte {
	if len(b) > cap(s.buf)-len(s.buf) {
		if len(b) > slabSize6/4 {
			return bytes.Clone(b)
		}
		s.buf = make([]byte, 0, slabSize6)
	}
	n := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[n:len(s.buf):len(s.buf)]
}

// room is an empty slice to append a piece to; keep claims it.
func (s *slab6) room() []byte {
	if cap(s.buf)-len(s.buf) < minRoom6 {
		s.buf = make([]byte, 0, slabSize6)
	}
	return s.buf[len(s.buf):len(s.buf)]
}

// keep claims b, made by appending to room(), and returns it.
func (s *slab6) keep(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) <= cap(s.buf)-len(s.buf) {
		// It never outgrew the room, so it is the slab's next bytes.
		s.buf = s.buf[:len(s.buf)+len(b)]
	}
	return b[:len(b):len(b)]
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
					s.rlog.Log(s.log, slog.LevelError, "removing expired DHCPv6 lease failed", "ip", ip, "err", err)
					return
				}
				s.st.removals.Add(1)
				s.log.Info("DHCPv6 lease expired", "ip", ip)
			})
		}
		s.mu.Unlock()
	}
}
