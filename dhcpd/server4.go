package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/ratelog"
	"github.com/vnetd/vnetd/leases"
)

// Config4 configures a DHCPv4 server.
type Config4 struct {
	// Network is the live definition; the server serves its IPv4 <ip> that
	// has <dhcp> (ranges and/or hosts).
	Network *conf.Network
	// Bridge is the interface to serve on, and the only one.
	Bridge string
	Store  LeaseStore
	Log    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server tuning. One goroutine reads, parses, decides and answers, so a
// client's messages keep their order. Nobody waits for the disk: a lease
// is submitted to the store, which commits everything queued at once, and
// its ACK goes out from the completion.
const (
	// readBatch4 is the most datagrams read before their replies go.
	readBatch4  = 32
	sweepEvery4 = 15 * time.Second
	maxPacket4  = 4096
)

// Server4 is the DHCPv4 server of one network's bridge: a socket shell
// around Handler4. It receives on UDP port 67 bound to the bridge and sends
// complete Ethernet frames (checksums computed) on an AF_PACKET socket on
// the bridge. One goroutine handles the requests in the order they came,
// so a client's messages keep their order.
type Server4 struct {
	cfg Config4
	log *slog.Logger
	now func() time.Time
	h   *Handler4
	// panics counts the packets whose handling panicked (a bug), and
	// rlog limits the lines they log.
	panics atomic.Uint64
	rlog   ratelog.Limiter

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	stopped chan struct{} // closed when every goroutine has stopped

	udp    net.PacketConn
	raw    *packet.Conn
	srcMAC net.HardwareAddr

	// decide serialises deciding and submitting to the store, so that the
	// store writes land in the order the handler decided them.
	decide sync.Mutex
	// inflight counts store writes not yet completed; done holds their
	// completions for the replier.
	inflight sync.WaitGroup
	done4    queue[completion4]
	// out sends a frame to mac on the bridge (the packet socket; tests
	// replace it).
	out func(frame []byte, mac net.HardwareAddr) error
	// newSender makes a sender of many frames at once for one goroutine
	// (nil, or returning nil: one by one through out). The replier and
	// the serving loop each have one, in their replyBatch.
	newSender func() func(frames [][]byte, macs []net.HardwareAddr) []error
	replies   replyBatch // the replier's
	pending   sync.Pool  // of *pending4
}

// New4 makes the server of cfg.Network's IPv4 DHCP <ip>, with the leases of
// the network already in cfg.Store. It opens no socket: Start does.
func New4(cfg Config4) (*Server4, error) {
	switch {
	case cfg.Network == nil:
		return nil, errors.New("dhcpv4: no network definition")
	case cfg.Bridge == "":
		return nil, fmt.Errorf("dhcpv4: network %q: no bridge to serve on", cfg.Network.Name)
	case cfg.Store == nil:
		return nil, fmt.Errorf("dhcpv4: network %q: no lease store", cfg.Network.Name)
	}
	stored, err := cfg.Store.List(cfg.Network.Name)
	if err != nil {
		return nil, fmt.Errorf("dhcpv4: network %q: loading leases: %w", cfg.Network.Name, err)
	}
	h, err := NewHandler4(cfg.Network, stored)
	if err != nil {
		return nil, fmt.Errorf("dhcpv4: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Server4{
		cfg: cfg,
		log: log.With("network", cfg.Network.Name, "bridge", cfg.Bridge, "service", "dhcpv4"),
		now: now,
		h:   h,
	}, nil
}

// Start opens the sockets on the bridge and serves until ctx is cancelled
// or Close is called. The sockets are made in the calling thread's network
// namespace.
func (s *Server4) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("dhcpv4: server is closed")
	case s.started:
		return errors.New("dhcpv4: server already started")
	}
	ifi, err := bridgeInterface(s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("dhcpv4: cannot serve on bridge %s (UDP port 67): %w", s.cfg.Bridge, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("dhcpv4: bridge %s has no Ethernet address", s.cfg.Bridge)
	}
	udp, err := listenUDP4(ctx, s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("dhcpv4: cannot bind UDP port 67 on bridge %s: %w", s.cfg.Bridge, err)
	}
	// Protocol 0: this socket only sends, it receives nothing.
	raw, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		udp.Close()
		return fmt.Errorf("dhcpv4: cannot open a packet socket on bridge %s: %w", s.cfg.Bridge, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s.started, s.cancel, s.stopped = true, cancel, make(chan struct{})
	s.udp, s.raw, s.srcMAC = udp, raw, ifi.HardwareAddr
	s.out = func(frame []byte, mac net.HardwareAddr) error {
		_, err := raw.WriteTo(frame, &packet.Addr{HardwareAddr: mac})
		return err
	}
	s.newSender = func() func([][]byte, []net.HardwareAddr) []error { return batchSender(raw, ifi.Index) }
	s.replies = replyBatch{send: s.newSender()}
	s.done4.wake = make(chan struct{}, 1)

	var workers, repliers sync.WaitGroup
	go func() { // the reader ends when its socket is closed
		<-ctx.Done()
		udp.Close()
	}()
	workers.Go(func() { s.serveLoop(ctx) })
	workers.Go(func() { s.sweepLoop(ctx) })
	repliers.Go(s.reply)
	go func() {
		workers.Wait()
		// Every write is submitted; let the last completions out.
		s.inflight.Wait()
		s.done4.close()
		repliers.Wait()
		raw.Close()
		close(s.stopped)
	}()
	s.log.Info("DHCPv4 server started", "address", s.h.serverAddr())
	return nil
}

// Update applies a changed live definition: new ranges, hosts and options
// take effect at once and leases are kept.
func (s *Server4) Update(n *conf.Network) error {
	if err := s.h.Update(n); err != nil {
		return fmt.Errorf("dhcpv4: %w", err)
	}
	s.log.Info("DHCPv4 configuration updated")
	return nil
}

// Close stops the server and waits for it. It may be called more than once.
func (s *Server4) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel, stopped := s.cancel, s.stopped
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-stopped
	return nil
}

// Stats returns the server's counters, with its leases and pool size now.
func (s *Server4) Stats() Stats4 {
	st := s.h.Stats()
	st.Bound, st.PoolSize = s.h.Bound(s.now()), s.h.PoolSize()
	st.Panic = s.panics.Load()
	return st
}

// serveLoop reads, decides and answers in one goroutine (datagramBatch
// says why): the datagrams waiting on the socket are served in order and
// their OFFERs and NAKs go out with one sendmmsg.
func (s *Server4) serveLoop(ctx context.Context) {
	var in *datagramBatch
	if c, ok := s.udp.(syscall.Conn); ok {
		in = newDatagramBatch(c, readBatch4, maxPacket4)
	}
	recv := datagramReader4(s.udp)
	var buf []byte // only without a datagramBatch
	if in == nil {
		buf = make([]byte, maxPacket4)
	}
	rb := &replyBatch{send: s.newSender()}
	var slab slab4
	for {
		var n, size int
		var err error
		if in != nil {
			n, err = in.read()
		} else {
			size, err = recv(buf)
			n = 1
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("DHCPv4 receive failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for i := range n {
			d := buf[:size]
			if in != nil {
				d, _ = in.datagram(i)
			}
			// A copy: a request whose lease is being stored is answered
			// from its bytes after the commit.
			s.serve(ctx, slab.copy(d), rb)
		}
		s.flush(rb)
	}
}

// datagramReader4 reads one datagram from c. The sender's address is not
// needed (replies go by the request's fields): ReadFrom allocated it for
// every packet.
func datagramReader4(c net.PacketConn) func([]byte) (int, error) {
	if r, ok := c.(interface{ Read([]byte) (int, error) }); ok {
		return r.Read
	}
	return func(b []byte) (int, error) {
		n, _, err := c.ReadFrom(b)
		return n, err
	}
}

// slab4 copies the reader's datagrams into blocks, each datagram its own
// slice that the request and its reply alias until the reply is sent: one
// allocation for dozens of requests instead of one each. A block is
// collected once nothing in it is referenced; no lease keeps a slice of a
// request.
type slab4 struct{ free []byte }

// slabLen4 is the block size, within the allocator's small size classes:
// 64 KiB blocks, allocated as large objects, saved nothing more.
const slabLen4 = 16 << 10

// copy returns a copy of p.
func (s *slab4) copy(p []byte) []byte {
	if len(p) > len(s.free) {
		if len(p) > slabLen4/4 {
			return append([]byte(nil), p...)
		}
		s.free = make([]byte, slabLen4)
	}
	b := s.free[:len(p):len(p)]
	s.free = s.free[len(p):]
	copy(b, p)
	return b
}

// serve handles one datagram: decide, persist, then reply. Replies that
// need no store write (OFFERs, NAKs) are queued in rb to go out with the
// others of its read; nil rb sends them at once. b must stay unchanged until
// its reply is sent: the request aliases it.
func (s *Server4) serve(ctx context.Context, b []byte, rb *replyBatch) {
	defer func() {
		// Never expected (FuzzHandle4), but one bad packet must not take
		// the daemon down.
		if r := recover(); r != nil {
			s.panics.Add(1)
			logPanic(s.log, &s.rlog, "DHCPv4 packet handling panicked", r)
		}
	}()
	var req request4
	if err := parseRequest4(b, &req); err != nil {
		s.h.stats.dropped.Add(1)
		s.log.Debug("DHCPv4 malformed packet dropped", "err", err)
		return
	}
	debug := s.log.Enabled(ctx, slog.LevelDebug)
	if debug {
		s.log.Debug("DHCPv4 request", "type", req.messageType().String(), "mac", req.chaddr.String(),
			"ciaddr", req.ciaddrRaw, "requested", logIP4(req.opts.reqIP), "server", logIP4(req.opts.serverID),
			"broadcast", req.isBroadcast(), "hostname", req.hostName())
	}
	d, submitted, err := s.decideAndSubmit(&req)
	switch {
	case err != nil:
		if debug {
			s.log.Debug("DHCPv4 packet dropped", "mac", req.chaddr.String(), "err", err)
		}
	case !submitted && rb != nil:
		s.queueReply(rb, &req, &d.ans, nil)
	case !submitted:
		s.answer(&req, &d.ans, nil)
	}
}

// decideAndSubmit handles req and submits its store write, under s.decide
// so that the store commits writes in decision order. When it submitted a
// write, the answer goes out from the write's completion.
func (s *Server4) decideAndSubmit(req *request4) (d decision4, submitted bool, err error) {
	s.decide.Lock()
	defer s.decide.Unlock()
	d, err = s.h.decide(req, s.now())
	if err != nil || (!d.commit.IP.IsValid() && !d.release.IsValid()) {
		return d, false, err
	}
	var c leases.Changes
	if d.commit.IP.IsValid() {
		c.Put = []leases.Lease{d.commit}
	}
	if d.release.IsValid() {
		c.Delete = []leases.Key{{Network: s.cfg.Network.Name, IP: d.release}}
	}
	p := s.newPending()
	p.c = completion4{req: *req, ans: d.ans, commit: d.commit, release: d.release}
	s.inflight.Add(1)
	s.cfg.Store.Apply(c, p.done)
	return d, true, nil
}

// completion4 is a request whose store write finished.
type completion4 struct {
	req     request4
	ans     answer4
	commit  leases.Lease // none: invalid IP
	release netip.Addr   // invalid: none
	err     error
}

func (c *completion4) committed() *leases.Lease { return committed4(&c.commit) }

func committed4(l *leases.Lease) *leases.Lease {
	if !l.IP.IsValid() {
		return nil
	}
	return l
}

// pending4 is a store write in flight and what to do once it is done.
// They are recycled (Server4.pending), each with its done made once: a
// closure per write was an allocation per ACK.
type pending4 struct {
	s    *Server4
	c    completion4
	done func(error)
}

func (s *Server4) newPending() *pending4 {
	if p, _ := s.pending.Get().(*pending4); p != nil {
		return p
	}
	p := &pending4{s: s}
	p.done = p.finish
	return p
}

// finish is the store's done: the completion goes to the replier.
func (p *pending4) finish(err error) {
	s := p.s
	if p.c.release.IsValid() {
		// Only now may the address go to someone else.
		s.h.Settle(p.c.release)
	}
	p.c.err = err
	s.done4.push(p.c)
	p.c = completion4{}
	s.pending.Put(p)
	s.inflight.Done()
}

// reply answers the requests whose leases are durable (or reports why
// not), in the order they were stored.
func (s *Server4) reply() {
	var batch []completion4
	pace := newPacer()
	for {
		batch = s.done4.take(batch)
		if batch == nil {
			return
		}
		pace.spread(len(batch), func(lo, hi int) { s.completeChunk(batch[lo:hi]) })
		clear(batch)
	}
}

// completeChunk answers a chunk of completions, their replies sent
// together.
func (s *Server4) completeChunk(cs []completion4) {
	for i := range cs {
		if c := &cs[i]; s.settled(c) {
			s.queueReply(&s.replies, &c.req, &c.ans, c.committed())
		}
	}
	s.flush(&s.replies)
}

// reply4 is a reply waiting in a replyBatch.
type reply4 struct {
	req    request4
	ans    answer4
	commit leases.Lease // none: invalid IP
}

// replyBatch collects one goroutine's replies so that they go out with one
// sendmmsg: at thousands of replies a second, one sendto each was a fifth
// of the server's CPU. Their frames are encoded into one arena, reused
// once they are sent.
type replyBatch struct {
	send   func(frames [][]byte, macs []net.HardwareAddr) []error // nil: one by one
	items  []reply4
	arena  []byte
	starts []int
	frames [][]byte
	macs   []net.HardwareAddr
}

// queueReply adds a to rb, sending rb when it holds a chunk.
func (s *Server4) queueReply(rb *replyBatch, req *request4, a *answer4, commit *leases.Lease) {
	if !a.ok() || rb.send == nil {
		s.answer(req, a, commit)
		return
	}
	rb.items = append(rb.items, reply4{req: *req, ans: *a})
	if commit != nil {
		rb.items[len(rb.items)-1].commit = *commit
	}
	if len(rb.items) >= paceChunk {
		s.flush(rb)
	}
}

// flush sends what rb holds; each reply's outcome is counted and logged.
func (s *Server4) flush(rb *replyBatch) {
	if len(rb.items) == 0 {
		return
	}
	arena, starts, macs := rb.arena[:0], rb.starts[:0], rb.macs[:0]
	for i := range rb.items {
		r := &rb.items[i]
		mac, ip := destOf4(&r.req, &r.ans)
		starts = append(starts, len(arena))
		arena = appendFrame4(arena, mac, s.srcMAC, r.ans.cfg.server, ip, &r.ans)
		macs = append(macs, mac)
	}
	// Sliced once the arena has stopped growing.
	frames := rb.frames[:0]
	for i, lo := range starts {
		hi := len(arena)
		if i+1 < len(starts) {
			hi = starts[i+1]
		}
		frames = append(frames, arena[lo:hi:hi])
	}
	for j, err := range rb.send(frames, macs) {
		r := &rb.items[j]
		s.answered(&r.req, &r.ans, committed4(&r.commit), err)
	}
	// Keep no request reachable.
	clear(frames)
	clear(macs)
	clear(rb.items)
	rb.arena, rb.starts, rb.frames, rb.macs, rb.items = arena, starts, frames, macs, rb.items[:0]
}

// settled reports a completion's store outcome and whether it is to be
// answered: a lease that is not durable gets no ACK.
func (s *Server4) settled(c *completion4) bool {
	req := &c.req
	if c.err != nil {
		s.h.stats.storeErrors.Add(1)
		if c.commit.IP.IsValid() {
			s.rlog.Log(s.log, slog.LevelError, "DHCPv4 lease not stored: no ACK sent", "ip", c.commit.IP, "mac", c.commit.MAC.String(), "err", c.err)
		} else {
			s.rlog.Log(s.log, slog.LevelError, "DHCPv4 lease not deleted", "ip", c.release, "err", c.err)
		}
		return false
	}
	if c.release.IsValid() && s.log.Enabled(context.Background(), slog.LevelInfo) {
		s.log.Info("DHCPv4 lease ended", "ip", c.release, "mac", req.chaddr.String(), "why", req.messageType().String())
	}
	return true
}

// answer sends a, if any, and logs it.
func (s *Server4) answer(req *request4, a *answer4, commit *leases.Lease) {
	if !a.ok() {
		if req.messageType() == dhcpv4.MessageTypeDiscover && s.log.Enabled(context.Background(), slog.LevelInfo) {
			s.rlog.Log(s.log, slog.LevelInfo, "DHCPv4 no address available", "mac", req.chaddr.String())
		}
		return
	}
	s.answered(req, a, commit, s.send(req, a))
}

// answered counts and logs a, sent with the outcome err. The arguments of
// a log line are made only when its level is on: the ACK's cost as much as
// the rest of the reply.
func (s *Server4) answered(req *request4, a *answer4, commit *leases.Lease, err error) {
	if err != nil {
		s.h.stats.sendErrors.Add(1)
		s.rlog.Log(s.log, slog.LevelError, "DHCPv4 reply not sent", "type", a.mt.String(), "mac", req.chaddr.String(), "err", err)
		return
	}
	ctx := context.Background()
	switch a.mt {
	case dhcpv4.MessageTypeAck:
		switch {
		case commit != nil && s.log.Enabled(ctx, slog.LevelInfo):
			// The attributes Info would make of its arguments, without
			// boxing the strings and the time.
			s.log.LogAttrs(ctx, slog.LevelInfo, "DHCPACK", slog.Any("ip", commit.IP), slog.String("mac", commit.MAC.String()),
				slog.String("hostname", commit.Hostname), slog.Time("expiry", commit.Expiry))
		case commit == nil && s.log.Enabled(ctx, slog.LevelDebug):
			s.log.Debug("DHCPACK (INFORM)", "ciaddr", req.ciaddrRaw, "mac", req.chaddr.String())
		}
	case dhcpv4.MessageTypeNak:
		if s.log.Enabled(ctx, slog.LevelInfo) {
			s.rlog.Log(s.log, slog.LevelInfo, "DHCPNAK", "requested", logIP4(req.opts.reqIP), "ciaddr", req.ciaddrRaw, "mac", req.chaddr.String(), "reason", a.msg)
		}
	default:
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("DHCPOFFER", "ip", net.IP(a.yiaddr.AsSlice()), "mac", req.chaddr.String())
		}
	}
}

var (
	broadcastMAC4 = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	broadcastIP4  = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// destOf4 is where a reply goes on the bridge (RFC 2131 §4.1, no relays):
// NAKs are broadcast; a client that has an address (ciaddr: renewing,
// rebinding, INFORM) gets it unicast there; one that asked for broadcast
// gets broadcast; anyone else gets it unicast to its MAC and new address.
func destOf4(req *request4, a *answer4) (net.HardwareAddr, netip.Addr) {
	if a.mt == dhcpv4.MessageTypeNak {
		return broadcastMAC4, broadcastIP4
	}
	if req.ciaddr.IsValid() {
		return req.chaddr, req.ciaddr
	}
	if req.isBroadcast() {
		return broadcastMAC4, broadcastIP4
	}
	if a.yiaddr.IsValid() {
		return req.chaddr, a.yiaddr
	}
	return broadcastMAC4, broadcastIP4
}

// send sends a alone, in a frame of its own: out may keep it.
func (s *Server4) send(req *request4, a *answer4) error {
	mac, ip := destOf4(req, a)
	frame := appendFrame4(make([]byte, 0, frameHeadersLen4+dhcpv4.MaxMessageSize), mac, s.srcMAC, a.cfg.server, ip, a)
	return s.out(frame, mac)
}

func (s *Server4) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepEvery4)
	defer t.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep deletes the leases that ran out from the store, as dnsmasq does.
func (s *Server4) sweep(ctx context.Context) {
	s.decide.Lock()
	defer s.decide.Unlock()
	for _, a := range s.h.Expire(s.now()) {
		s.inflight.Add(1)
		s.cfg.Store.Apply(leases.Changes{Delete: []leases.Key{{Network: s.cfg.Network.Name, IP: a}}}, func(err error) {
			defer s.inflight.Done()
			s.h.Settle(a)
			if err != nil {
				s.h.stats.storeErrors.Add(1)
				s.rlog.Log(s.log, slog.LevelError, "DHCPv4 expired lease not deleted", "ip", a, "err", err)
				return
			}
			s.log.Info("DHCPv4 lease expired", "ip", a)
		})
	}
}

// Leases returns the leases the server holds (for tests and diagnostics).
func (s *Server4) Leases() []leases.Lease { return s.h.Leases() }
