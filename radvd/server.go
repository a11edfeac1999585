package radvd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/ratelog"
	"golang.org/x/net/ipv6"
)

var (
	allNodes   = netip.MustParseAddr("ff02::1")
	allRouters = netip.MustParseAddr("ff02::2")
)

// errNotReady: the bridge has no link-local address to send from yet.
var errNotReady = errors.New("bridge has no usable link-local address yet")

// logEvery is how often one kind of per-packet problem is logged.
const logEvery = 10 * time.Second

// conn is the socket of one bridge: what the server needs of it, so that
// tests of the loop can stand in for it.
type conn interface {
	// read reads one ICMPv6 message with its IP hop limit and source.
	// An error wrapping errMalformed is one dropped datagram; one wrapping
	// net.ErrClosed ends the loop.
	read(b []byte) (n, hopLimit int, src netip.Addr, err error)
	// write sends an ICMPv6 message from src to dst on the bridge.
	write(b []byte, src, dst netip.Addr) error
	// link is the bridge's MAC and a link-local address it can send from;
	// errNotReady when it has none.
	link() (net.HardwareAddr, netip.Addr, error)
	close() error
}

// Config configures the router advertisements of one network.
type Config struct {
	// Network is the live definition; it must have an IPv6 <ip>.
	Network *conf.Network
	// Bridge is the interface to advertise on, and the only one used.
	Bridge string
	Log    *slog.Logger
}

// Stats counts what the server did since Start.
type Stats struct {
	Sent        uint64 // advertisements sent, multicast and unicast, the final one included
	Multicast   uint64 // of which to all nodes
	SendErrors  uint64
	Received    uint64 // router solicitations read
	Answered    uint64 // solicitations an advertisement answered
	Malformed   uint64 // solicitations dropped as invalid (RFC 4861 §6.1.1)
	RateLimited uint64 // solicitations dropped by the rate limits
}

type counters struct {
	sent, multicast, sendErrors                atomic.Uint64
	received, answered, malformed, rateLimited atomic.Uint64
}

// Server sends the router advertisements of one network's bridge, and
// nowhere else: its socket is bound to the bridge.
//
// Stopping comes in two kinds. Close withdraws the router first (router
// lifetime 0), for a network that goes down. Detach, or the end of the
// context given to Start, stops without a word, for a vnetd that exits
// while its networks keep running: guests keep their default route (1800 s)
// until the next vnetd advertises again, at its start.
type Server struct {
	cfg    Config
	name   string
	log    *slog.Logger
	now    func() time.Time
	rnd    func(time.Duration) time.Duration
	timing timing
	listen func(bridge string) (conn, error)

	mu       sync.Mutex // guards the fields below
	params   Params     // without the MAC, which is read when sending
	retiring Params     // withdrawn prefixes and DNS options still announced
	// retireLeft is how many more multicast advertisements carry retiring.
	retireLeft int
	sched      *scheduler
	started    bool
	closed     bool
	final      bool // Close: withdraw the router on the way out
	finalErr   error

	conn   conn
	parent context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	wg     sync.WaitGroup
	st     counters
	limit  ratelog.Limiter
}

// New checks cfg and builds the advertisement; nothing is sent before
// Start. It fails for a network without an IPv6 <ip> (ErrNoIPv6).
func New(cfg Config) (*Server, error) {
	if cfg.Network == nil {
		return nil, errors.New("radvd: no network")
	}
	if cfg.Bridge == "" {
		return nil, fmt.Errorf("radvd: network %s: no bridge", cfg.Network.Name)
	}
	p, err := ParamsFromNetwork(cfg.Network, nil)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		cfg:    cfg,
		name:   cfg.Network.Name,
		log:    log.With("network", cfg.Network.Name, "bridge", cfg.Bridge, "server", "radvd"),
		now:    time.Now,
		rnd:    randomDelay,
		timing: defaultTiming,
		listen: listen,
		params: p,
		wake:   make(chan struct{}, 1),
		limit:  ratelog.Limiter{Every: logEvery},
	}, nil
}

func randomDelay(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

// Start opens the ICMPv6 socket on the bridge, in the network namespace of
// the calling thread, and advertises until Close, Detach or the end of ctx.
// The first advertisement goes out at once, or as soon as the bridge's
// link-local address is usable (DAD keeps it tentative for 1 to 2 s after
// the bridge comes up): Start does not wait for it.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("radvd: server closed")
	}
	if s.started {
		return errors.New("radvd: server already started")
	}
	c, err := s.listen(s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("radvd: network %s: %w", s.name, err)
	}
	s.conn = c
	s.sched = newScheduler(s.now(), s.timing, s.rnd)
	s.parent = ctx
	var lctx context.Context
	lctx, s.cancel = context.WithCancel(ctx)
	s.started = true
	s.wg.Add(2)
	go s.run(lctx)
	go s.read()
	s.log.Info("router advertisements started", s.describe(s.params)...)
	return nil
}

// describe is the log attributes of an advertisement.
func (s *Server) describe(p Params) []any {
	var pfx []string
	for _, x := range p.Prefixes {
		mode := "slaac"
		if !x.Autonomous {
			mode = "on-link"
		}
		pfx = append(pfx, x.Prefix.String()+" "+mode)
	}
	return []any{"managed", p.Managed, "other", p.Other, "router_lifetime", p.RouterLifetime,
		"prefixes", pfx, "rdnss", p.RDNSS, "dnssl", p.DNSSL, "mtu", p.MTU}
}

// Update switches to a new definition of the network (net-update, address
// changes). When the advertisement changes, the new one goes out promptly
// (at most MIN_DELAY_BETWEEN_RAS after the last) and again on the fast
// initial schedule; prefixes and DNS options no longer advertised are
// announced with lifetime 0 meanwhile. On error the old advertisement
// stays.
func (s *Server) Update(n *conf.Network) error {
	p, err := ParamsFromNetwork(n, nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if reflect.DeepEqual(p, s.params) {
		return nil
	}
	s.retiring = withdrawn(s.retiring, s.params, p)
	s.retireLeft = 0
	if !s.retiring.empty() {
		s.retireLeft = s.timing.initialAdverts
	}
	s.params = p
	if s.sched != nil && !s.closed {
		s.sched.changed(s.now())
		s.poke()
	}
	s.log.Info("router advertisement changed", s.describe(p)...)
	return nil
}

// Close stops the server after a final multicast advertisement with router
// lifetime 0 (RFC 4861 §6.2.5), so that guests drop their default route
// through the bridge at once: for a network that goes down. Once ctx has
// ended there is no final advertisement (the socket is closed then).
// Nothing is sent once Close returns; calling it again does nothing.
func (s *Server) Close() error { return s.stop(true) }

// Detach stops the server without the final advertisement, as the end of
// ctx does: for a vnetd that exits while the network stays up, so that
// guests keep their routes until the next vnetd advertises again.
func (s *Server) Detach() error { return s.stop(false) }

func (s *Server) stop(final bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.final = final
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finalErr
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := &s.st
	return Stats{
		Sent: st.sent.Load(), Multicast: st.multicast.Load(), SendErrors: st.sendErrors.Load(),
		Received: st.received.Load(), Answered: st.answered.Load(),
		Malformed: st.malformed.Load(), RateLimited: st.rateLimited.Load(),
	}
}

// poke wakes the send loop to look at the schedule again.
func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run sends what the scheduler says is due, until ctx ends; then it sends
// the final advertisement if Close asked for one and closes the socket,
// which ends read.
func (s *Server) run(ctx context.Context) {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		next := s.sched.next()
		s.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			s.shutdown()
			return
		case <-s.wake:
		case <-timer.C:
		}
		now := s.now()
		s.mu.Lock()
		mc, mcAnswers, uc := s.sched.due(now)
		s.mu.Unlock()
		if mc || len(uc) > 0 {
			s.advertise(now, mc, mcAnswers, uc)
		}
	}
}

// current is the advertisement to send now, with the withdrawals being
// announced.
func (s *Server) current() Params {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.params
	if s.retireLeft > 0 {
		p = p.with(s.retiring)
	}
	return p
}

func (s *Server) advertise(now time.Time, mc bool, mcAnswers int, uc []unicast) {
	answers := mcAnswers
	for _, u := range uc {
		answers += u.answers
	}
	mac, src, err := s.conn.link()
	if err != nil {
		// Nothing can be sent without a link-local source (hosts drop
		// other advertisements, §6.1.2). One multicast, retried with
		// back-off, then answers everyone waiting.
		if errors.Is(err, errNotReady) {
			s.limit.Log(s.log, slog.LevelDebug, "no link-local address on the bridge yet, advertisement postponed")
		} else {
			s.st.sendErrors.Add(1)
			s.limit.Log(s.log, slog.LevelWarn, "looking up the bridge failed, advertisement postponed", "err", err)
		}
		s.mu.Lock()
		s.sched.unready(now, answers)
		s.mu.Unlock()
		return
	}
	p := s.current()
	p.SourceLinkLayer = mac
	b, err := ndp.MarshalMessage(BuildRA(p))
	if err != nil {
		// ParamsFromNetwork checked the advertisement: only a MAC that is
		// not Ethernet's gets here.
		s.st.sendErrors.Add(1)
		s.limit.Log(s.log, slog.LevelError, "cannot encode the router advertisement", "err", err)
		s.mu.Lock()
		if mc {
			s.sched.sent(now)
		}
		s.mu.Unlock()
		return
	}
	if mc {
		if s.send(b, src, allNodes) {
			s.st.multicast.Add(1)
			s.st.answered.Add(uint64(mcAnswers))
		}
		s.mu.Lock()
		// Also after a failed send: retrying at once would spin.
		s.sched.sent(now)
		if s.retireLeft > 0 {
			s.retireLeft--
			if s.retireLeft == 0 {
				s.retiring = Params{}
			}
		}
		s.mu.Unlock()
	}
	for _, u := range uc {
		if s.send(b, src, u.to) {
			s.st.answered.Add(uint64(u.answers))
		}
	}
}

func (s *Server) send(b []byte, src, dst netip.Addr) bool {
	if err := s.conn.write(b, src, dst); err != nil {
		s.st.sendErrors.Add(1)
		s.limit.Log(s.log, slog.LevelWarn, "sending a router advertisement failed", "to", dst, "err", err)
		return false
	}
	s.st.sent.Add(1)
	return true
}

// shutdown ends the loop: the final advertisement when Close asked for one
// and the socket is still usable, then the socket goes.
func (s *Server) shutdown() {
	s.mu.Lock()
	final := s.final && s.parent.Err() == nil
	s.mu.Unlock()
	var err error
	if final {
		err = s.sendFinal()
	}
	s.conn.close()
	s.mu.Lock()
	s.finalErr = err
	s.mu.Unlock()
	s.log.Info("router advertisements stopped", "router_withdrawn", final && err == nil)
}

func (s *Server) sendFinal() error {
	mac, src, err := s.conn.link()
	if errors.Is(err, errNotReady) {
		// No link-local address: no guest can have a route through it.
		return nil
	}
	if err != nil {
		return fmt.Errorf("radvd: network %s: final advertisement: %w", s.name, err)
	}
	p := s.current()
	p.SourceLinkLayer = mac
	p.RouterLifetime = 0
	b, err := ndp.MarshalMessage(BuildRA(p))
	if err == nil {
		err = s.conn.write(b, src, allNodes)
	}
	if err != nil {
		s.st.sendErrors.Add(1)
		return fmt.Errorf("radvd: network %s: final advertisement: %w", s.name, err)
	}
	s.st.sent.Add(1)
	s.st.multicast.Add(1)
	return nil
}

// read reads solicitations until the socket is closed.
func (s *Server) read() {
	defer s.wg.Done()
	// Solicitations are a few dozen bytes; a datagram longer than this is
	// cut and fails to parse. (One such buffer per network, and there may
	// be hundreds of networks.)
	buf := make([]byte, 4096)
	for {
		n, hop, src, err := s.conn.read(buf)
		switch {
		case errors.Is(err, net.ErrClosed):
			return
		case errors.Is(err, errMalformed):
			s.st.received.Add(1)
			s.st.malformed.Add(1)
			s.limit.Log(s.log, slog.LevelDebug, "dropped a malformed router solicitation", "err", err)
			continue
		case err != nil:
			s.limit.Log(s.log, slog.LevelWarn, "reading router solicitations failed", "err", err)
			// A socket error that persists must not spin the loop.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if n == 0 || ipv6.ICMPType(buf[0]) != ipv6.ICMPTypeRouterSolicitation {
			// Only what reached the socket before its ICMPv6 filter was
			// set: not a solicitation, not a problem.
			continue
		}
		s.st.received.Add(1)
		if _, err := parseRS(buf[:n], hop, src); err != nil {
			s.st.malformed.Add(1)
			s.limit.Log(s.log, slog.LevelDebug, "dropped a malformed router solicitation", "from", src, "err", err)
			continue
		}
		s.mu.Lock()
		v := s.sched.solicit(s.now(), src)
		s.mu.Unlock()
		if v == rateLimited {
			s.st.rateLimited.Add(1)
			s.limit.Log(s.log, slog.LevelDebug, "router solicitation rate-limited", "from", src)
			continue
		}
		s.poke()
	}
}
