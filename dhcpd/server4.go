package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"github.com/vnetd/vnetd/conf"
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

// Server tuning. Workers parse, decide and answer; a client always lands
// on the same worker, so its messages keep their order. Nobody waits for
// the disk: a lease is submitted to the store, which commits everything
// queued at once, and its ACK goes out from the completion.
const (
	queueLen4   = 1024
	sweepEvery4 = 15 * time.Second
	maxPacket4  = 4096
)

// workers4 is how many workers a server runs: one per CPU the Go runtime
// uses, since deciding is serialised and the rest is CPU work.
func workers4() int { return max(2, runtime.GOMAXPROCS(0)) }

// Server4 is the DHCPv4 server of one network's bridge: a socket shell
// around Handler4. It receives on UDP port 67 bound to the bridge and sends
// complete Ethernet frames (checksums computed) on an AF_PACKET socket on
// the bridge. Requests are handled by a fixed number of workers, each
// client always by the same one, so a client's messages keep their order.
type Server4 struct {
	cfg Config4
	log *slog.Logger
	now func() time.Time
	h   *Handler4

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	stopped chan struct{} // closed when every goroutine has stopped

	udp    net.PacketConn
	raw    *packet.Conn
	srcMAC net.HardwareAddr
	queues []*queue[[]byte]

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
	// each worker have one, in their replyBatch.
	newSender func() func(frames [][]byte, macs []net.HardwareAddr) []error
	replies   replyBatch // the replier's
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
	s.queues = make([]*queue[[]byte], workers4())
	for i := range s.queues {
		s.queues[i] = &queue[[]byte]{max: queueLen4, wake: make(chan struct{}, 1)}
	}
	s.done4.wake = make(chan struct{}, 1)

	var workers, repliers sync.WaitGroup
	go func() { // the reader ends when its socket is closed
		<-ctx.Done()
		udp.Close()
	}()
	workers.Go(func() {
		s.read(ctx)
		for _, q := range s.queues {
			q.close()
		}
	})
	for _, q := range s.queues {
		workers.Go(func() {
			var batch [][]byte
			rb := &replyBatch{send: s.newSender()}
			for {
				if batch = q.take(batch); batch == nil {
					return
				}
				for _, b := range batch {
					s.serve(ctx, b, rb)
				}
				s.flush(rb)
				clear(batch)
			}
		})
	}
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
	return st
}

func (s *Server4) read(ctx context.Context) {
	buf := make([]byte, maxPacket4)
	for {
		n, _, err := s.udp.ReadFrom(buf)
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
		b := append([]byte(nil), buf[:n]...)
		q := s.queues[shard4(b, len(s.queues))]
		if !q.push(b) {
			s.h.stats.overflow.Add(1)
			s.log.Debug("DHCPv4 request dropped: worker queue full")
		}
	}
}

// shard4 picks the worker, of n, of a packet from its client hardware
// address.
func shard4(b []byte, n int) int {
	if len(b) < 34 {
		return 0
	}
	f := fnv.New32a()
	f.Write(b[28:34])
	return int(f.Sum32() % uint32(n))
}

// serve handles one packet: decide, persist, then reply.
// serve handles one datagram. Replies that need no store write (OFFERs,
// NAKs) are queued in rb to go out with the worker's others; nil rb sends
// them at once.
func (s *Server4) serve(ctx context.Context, b []byte, rb *replyBatch) {
	defer func() {
		// Never expected (FuzzHandle4), but one bad packet must not take
		// the daemon down.
		if r := recover(); r != nil {
			s.h.stats.dropped.Add(1)
			s.log.Error("DHCPv4 packet handling panicked", "panic", r)
		}
	}()
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.h.stats.dropped.Add(1)
		s.log.Debug("DHCPv4 malformed packet dropped", "err", err)
		return
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("DHCPv4 request", "type", req.MessageType().String(), "mac", req.ClientHWAddr.String(),
			"ciaddr", req.ClientIPAddr, "requested", req.RequestedIPAddress(), "server", req.ServerIdentifier(),
			"broadcast", req.IsBroadcast(), "hostname", req.HostName())
	}
	resp, commit, submitted, err := s.decideAndSubmit(req)
	switch {
	case err != nil:
		s.log.Debug("DHCPv4 packet dropped", "mac", req.ClientHWAddr.String(), "err", err)
	case !submitted && rb != nil:
		s.queueReply(rb, req, resp, commit)
	case !submitted:
		s.answer(req, resp, commit)
	}
}

// decideAndSubmit handles req and submits its store write, under s.decide
// so that the store commits writes in decision order. When it submitted a
// write, the answer goes out from the write's completion.
func (s *Server4) decideAndSubmit(req *dhcpv4.DHCPv4) (resp *dhcpv4.DHCPv4, commit *leases.Lease, submitted bool, err error) {
	s.decide.Lock()
	defer s.decide.Unlock()
	resp, commit, release, err := s.h.Handle(req, s.now())
	if err != nil || (commit == nil && release == nil) {
		return resp, commit, false, err
	}
	var c leases.Changes
	if commit != nil {
		c.Put = []leases.Lease{*commit}
	}
	if release != nil {
		c.Delete = []leases.Key{{Network: s.cfg.Network.Name, IP: *release}}
	}
	s.inflight.Add(1)
	s.cfg.Store.Apply(c, func(err error) {
		if release != nil {
			// Only now may the address go to someone else.
			s.h.Settle(*release)
		}
		s.done4.push(completion4{req: req, resp: resp, commit: commit, release: release, err: err})
		s.inflight.Done()
	})
	return resp, commit, true, nil
}

// completion4 is a request whose store write finished.
type completion4 struct {
	req, resp *dhcpv4.DHCPv4
	commit    *leases.Lease
	release   *netip.Addr
	err       error
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
			s.queueReply(&s.replies, c.req, c.resp, c.commit)
		}
	}
	s.flush(&s.replies)
}

// reply4 is a reply waiting in a replyBatch.
type reply4 struct {
	req, resp *dhcpv4.DHCPv4
	commit    *leases.Lease
}

// replyBatch collects one goroutine's replies so that they go out with one
// sendmmsg: at thousands of replies a second, one sendto each was a fifth
// of the server's CPU.
type replyBatch struct {
	send   func(frames [][]byte, macs []net.HardwareAddr) []error // nil: one by one
	items  []reply4
	frames [][]byte
	macs   []net.HardwareAddr
}

// queueReply adds resp to rb, sending rb when it holds a chunk.
func (s *Server4) queueReply(rb *replyBatch, req, resp *dhcpv4.DHCPv4, commit *leases.Lease) {
	if resp == nil || rb.send == nil {
		s.answer(req, resp, commit)
		return
	}
	rb.items = append(rb.items, reply4{req, resp, commit})
	if len(rb.items) >= paceChunk {
		s.flush(rb)
	}
}

// flush sends what rb holds; each reply's outcome is counted and logged.
func (s *Server4) flush(rb *replyBatch) {
	if len(rb.items) == 0 {
		return
	}
	frames, macs := rb.frames[:0], rb.macs[:0]
	for _, r := range rb.items {
		mac, f := s.frame(r.req, r.resp)
		frames, macs = append(frames, f), append(macs, mac)
	}
	for j, err := range rb.send(frames, macs) {
		r := &rb.items[j]
		s.answered(r.req, r.resp, r.commit, err)
	}
	clear(frames)
	clear(rb.items)
	rb.frames, rb.macs, rb.items = frames, macs, rb.items[:0]
}

func (s *Server4) complete(c *completion4) {
	if s.settled(c) {
		s.answer(c.req, c.resp, c.commit)
	}
}

// settled reports a completion's store outcome and whether it is to be
// answered: a lease that is not durable gets no ACK.
func (s *Server4) settled(c *completion4) bool {
	req := c.req
	if c.err != nil {
		s.h.stats.storeErrors.Add(1)
		if c.commit != nil {
			s.log.Error("DHCPv4 lease not stored: no ACK sent", "ip", c.commit.IP, "mac", c.commit.MAC.String(), "err", c.err)
		} else {
			s.log.Error("DHCPv4 lease not deleted", "ip", *c.release, "err", c.err)
		}
		return false
	}
	if c.release != nil {
		s.log.Info("DHCPv4 lease ended", "ip", *c.release, "mac", req.ClientHWAddr.String(), "why", req.MessageType().String())
	}
	return true
}

// answer sends resp, if any, and logs it.
func (s *Server4) answer(req, resp *dhcpv4.DHCPv4, commit *leases.Lease) {
	if resp == nil {
		if req.MessageType() == dhcpv4.MessageTypeDiscover {
			s.log.Info("DHCPv4 no address available", "mac", req.ClientHWAddr.String())
		}
		return
	}
	s.answered(req, resp, commit, s.send(req, resp))
}

// answered counts and logs resp, sent with the outcome err.
func (s *Server4) answered(req, resp *dhcpv4.DHCPv4, commit *leases.Lease, err error) {
	if err != nil {
		s.h.stats.sendErrors.Add(1)
		s.log.Error("DHCPv4 reply not sent", "type", resp.MessageType().String(), "mac", req.ClientHWAddr.String(), "err", err)
		return
	}
	switch resp.MessageType() {
	case dhcpv4.MessageTypeAck:
		if commit != nil {
			s.log.Info("DHCPACK", "ip", commit.IP, "mac", commit.MAC.String(), "hostname", commit.Hostname, "expiry", commit.Expiry)
		} else {
			s.log.Debug("DHCPACK (INFORM)", "ciaddr", req.ClientIPAddr, "mac", req.ClientHWAddr.String())
		}
	case dhcpv4.MessageTypeNak:
		s.log.Info("DHCPNAK", "requested", req.RequestedIPAddress(), "ciaddr", req.ClientIPAddr, "mac", req.ClientHWAddr.String(), "reason", resp.Message())
	default:
		s.log.Debug("DHCPOFFER", "ip", resp.YourIPAddr, "mac", req.ClientHWAddr.String())
	}
}

var (
	broadcastMAC4 = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	broadcastIP4  = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// dest4 is where a reply goes on the bridge (RFC 2131 §4.1, no relays):
// NAKs are broadcast; a client that has an address (ciaddr: renewing,
// rebinding, INFORM) gets it unicast there; one that asked for broadcast
// gets broadcast; anyone else gets it unicast to its MAC and new address.
func dest4(req, resp *dhcpv4.DHCPv4) (net.HardwareAddr, netip.Addr) {
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return broadcastMAC4, broadcastIP4
	}
	if ci := ip4(req.ClientIPAddr); ci.IsValid() {
		return req.ClientHWAddr, ci
	}
	if req.IsBroadcast() {
		return broadcastMAC4, broadcastIP4
	}
	if yi := ip4(resp.YourIPAddr); yi.IsValid() {
		return req.ClientHWAddr, yi
	}
	return broadcastMAC4, broadcastIP4
}

func (s *Server4) send(req, resp *dhcpv4.DHCPv4) error {
	mac, frame := s.frame(req, resp)
	return s.out(frame, mac)
}

// frame is resp as the Ethernet frame that answers req, and where it goes.
func (s *Server4) frame(req, resp *dhcpv4.DHCPv4) (net.HardwareAddr, []byte) {
	mac, ip := dest4(req, resp)
	return mac, frame4(mac, s.srcMAC, s.h.serverAddr(), ip, serverPort4, clientPort4, resp.ToBytes())
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
				s.log.Error("DHCPv4 expired lease not deleted", "ip", a, "err", err)
				return
			}
			s.log.Info("DHCPv4 lease expired", "ip", a)
		})
	}
}

// Leases returns the leases the server holds (for tests and diagnostics).
func (s *Server4) Leases() []leases.Lease { return s.h.Leases() }
