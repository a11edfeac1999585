package dnsd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/internal/ratelog"
)

// handler answers the queries of one network from its current zone, the
// cache and the upstream servers. Its ServeDNS serves TCP and the tests;
// the UDP readers use its parts (plan, fromCache, forward) so that only
// forwarding ever leaves the reader's goroutine.
type handler struct {
	zone   atomic.Pointer[zone]
	cache  *cache
	fwd    *forwarder
	resolv *resolvConf
	log    *slog.Logger
	now    func() time.Time
	// ctx ends forwarding when the server closes.
	ctx context.Context
	// sem bounds the queries waiting for an upstream, over UDP and TCP
	// alike.
	sem chan struct{}
	st  counters // TCP, forwarding goroutines and tests
	lim ratelog.Limiter
}

func newHandler(z *zone, resolv *resolvConf, log *slog.Logger, now func() time.Time) *handler {
	h := &handler{
		cache:  newCache(),
		fwd:    newForwarder(),
		resolv: resolv,
		log:    log,
		now:    now,
		ctx:    context.Background(),
		sem:    make(chan struct{}, maxForwards),
		lim:    ratelog.Limiter{Now: now},
	}
	h.zone.Store(z)
	return h
}

// job is a question that needs an upstream.
type job struct {
	r   *dns.Msg
	q   query
	dec decision
	z   *zone
}

// ServeDNS answers r, waiting for an upstream if it must.
func (h *handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	src, udp := peer(w.RemoteAddr())
	defer h.recoverQuery(&h.st, src)
	h.serve(h.ctx, w, r, src, udp, &h.st)
}

// recoverQuery is deferred around the handling of a query. The parsers
// are fuzzed; this is the last line of defence against a crafted packet
// taking the daemon down with it. A client that found such a packet may
// send it a thousand times a second: the line is rate-limited, the count
// is not.
func (h *handler) recoverQuery(st *counters, client netip.Addr) {
	if r := recover(); r != nil {
		st.panics.Add(1)
		h.lim.Log(h.log, slog.LevelError, "DNS query handling panicked", "client", client, "panic", r)
	}
}

func (h *handler) serve(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, src netip.Addr, udp bool, st *counters) {
	m, j := h.plan(h.zone.Load(), r, src, st)
	switch {
	case m == nil && j == nil:
		return
	case j != nil:
		if out := h.fromCache(j, nil, st); out != nil {
			if !udp || len(out) <= j.q.maxUDP() {
				st.rcode(int(out[3] & 0xf))
				h.writeErr(w.Write(out))
				return
			}
			// Too big for the client's UDP: truncate it the slow way.
			m = new(dns.Msg)
			if m.Unpack(out) != nil {
				m = reply(dns.RcodeServerFailure)
			}
		} else if m = h.forwardBounded(ctx, j, st); m == nil {
			return
		}
	}
	m = finish(r, m, udp)
	st.rcode(m.Rcode)
	h.writeErr(0, w.WriteMsg(m))
}

// forwardBounded is forward within the limit of queries waiting for
// upstreams that the UDP readers obey too (a client must not get around it
// by asking over TCP); nil means over the limit: the query is dropped and
// counted, and the client retries.
func (h *handler) forwardBounded(ctx context.Context, j *job, st *counters) *dns.Msg {
	if !h.acquireForward(st) {
		return nil
	}
	defer func() { <-h.sem }()
	return h.forward(ctx, j, st)
}

// acquireForward takes a slot of sem, or counts the overflow.
func (h *handler) acquireForward(st *counters) bool {
	select {
	case h.sem <- struct{}{}:
		return true
	default:
		st.overflow.Add(1)
		h.lim.Log(h.log, slog.LevelWarn, "too many DNS queries waiting for upstream servers; dropping", "limit", maxForwards)
		return false
	}
}

func (h *handler) writeErr(_ int, err error) {
	if err != nil {
		h.lim.Log(h.log, slog.LevelWarn, "cannot send DNS answer", "err", err)
	}
}

// plan decides what r gets: a reply that needs no upstream, or a job that
// forwards it. Neither means r is dropped (it is not a query).
func (h *handler) plan(z *zone, r *dns.Msg, src netip.Addr, st *counters) (*dns.Msg, *job) {
	if r.Response {
		st.malformed.Add(1)
		return nil, nil
	}
	if len(r.Question) == 1 {
		st.query(r.Question[0].Qtype)
	}
	if !z.allowed(src) {
		st.refused.Add(1)
		h.lim.Log(h.log, slog.LevelDebug, "DNS query refused: client outside the network", "client", src)
		return reply(dns.RcodeRefused), nil
	}
	if r.Opcode != dns.OpcodeQuery {
		return reply(dns.RcodeNotImplemented), nil
	}
	if len(r.Question) != 1 || optCount(r) > 1 {
		// More than one OPT record is a format error (RFC 6891 §6.1.1).
		return reply(dns.RcodeFormatError), nil
	}
	if opt := r.IsEdns0(); opt != nil && opt.Version() != 0 {
		return reply(dns.RcodeBadVers), nil
	}
	question := r.Question[0]
	switch {
	case question.Qclass != dns.ClassINET:
		return reply(dns.RcodeNotImplemented), nil
	case question.Qtype == dns.TypeAXFR || question.Qtype == dns.TypeIXFR:
		return reply(dns.RcodeRefused), nil
	case !plainType(question.Qtype):
		return reply(dns.RcodeNotImplemented), nil
	}
	j := &job{r: r, z: z}
	if !queryOf(r, &j.q) {
		return reply(dns.RcodeFormatError), nil
	}
	name := lowerASCII(question.Name)
	if m := z.localAnswer(name, question.Qtype); m != nil {
		return m, nil
	}
	j.dec = z.decide(name)
	if j.dec.local {
		m := reply(dns.RcodeNameError)
		if z.isENT(name) {
			m.Rcode = dns.RcodeSuccess
		}
		return m, nil
	}
	if len(j.dec.servers) == 0 && !j.dec.useResolv {
		return reply(dns.RcodeRefused), nil // nowhere to forward to, as dnsmasq answers
	}
	return nil, j
}

// fromCache appends the cached answer to j to out, or returns nil.
func (h *handler) fromCache(j *job, out []byte, st *counters) []byte {
	now := h.now()
	e := h.cache.get(j.q.cacheKey(), now)
	if e == nil {
		st.cacheMisses.Add(1)
		return nil
	}
	st.cacheHits.Add(1)
	return appendEntry(out, e, &j.q, now)
}

// forward asks the upstreams of j and returns their answer (to be
// finished for the client), SERVFAIL when none answered, REFUSED when there
// is none.
func (h *handler) forward(ctx context.Context, j *job, st *counters) *dns.Msg {
	servers := j.dec.servers
	if j.dec.useResolv {
		servers = nil
		for _, s := range h.resolv.get(h.now()) {
			if !j.z.isSelf(s.Addr()) {
				servers = append(servers, s)
			}
		}
	}
	if len(servers) == 0 {
		return reply(dns.RcodeRefused)
	}
	key := string(j.q.cacheKey())
	m, err := h.fwd.resolve(ctx, key, upstreamQuery(j.r), servers, st, func(m *dns.Msg) {
		h.cache.put(key, m, h.now())
	})
	if err != nil {
		h.lim.Log(h.log, slog.LevelWarn, "no answer from upstream DNS servers", "name", j.r.Question[0].Name,
			"type", dns.TypeToString[j.r.Question[0].Qtype], "err", err)
		return reply(dns.RcodeServerFailure)
	}
	m = m.Copy()
	negativeSOA(m)
	return m
}

// reply is an empty answer with rcode.
func reply(rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Response = true
	m.RecursionAvailable = true
	m.Rcode = rcode
	return m
}

// optCount is the number of OPT records of r.
func optCount(r *dns.Msg) int {
	n := 0
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// finish makes m the answer to r: r's ID, flags and question, this
// server's OPT record when r had one, and truncated to what a UDP client
// accepts.
func finish(r, m *dns.Msg, udp bool) *dns.Msg {
	m.Id = r.Id
	m.Opcode = r.Opcode
	m.Response = true
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.Question = nil
	if len(r.Question) == 1 {
		m.Question = r.Question
	}
	var extra []dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, opt.Do())
		size = max(size, min(int(opt.UDPSize()), ednsSize))
	} else if m.Rcode > 0xf {
		m.Rcode = dns.RcodeServerFailure // an extended code needs OPT
	}
	if udp {
		m.Truncate(size)
	} else {
		// A TCP message has a 16-bit length: thousands of guests naming
		// themselves alike must still get an answer, if a truncated one.
		m.Truncate(dns.MaxMsgSize)
	}
	return m
}

// queryOf fills q from a decoded request with one question, as parseQuery
// would from its bytes.
func queryOf(r *dns.Msg, q *query) bool {
	question := r.Question[0]
	n, err := dns.PackDomainName(question.Name, q.key[:maxName], 0, nil, false)
	if err != nil {
		return false
	}
	q.qname = append([]byte(nil), q.key[:n]...)
	for i := range n {
		if c := q.key[i]; c >= 'A' && c <= 'Z' {
			q.key[i] = c + 'a' - 'A'
		}
	}
	q.nameLen = n
	q.id = r.Id
	q.rd, q.cd, q.ad = 0, 0, 0
	if r.RecursionDesired {
		q.rd = flagRD
	}
	if r.CheckingDisabled {
		q.cd = flagCD
	}
	if r.AuthenticatedData {
		q.ad = flagAD
	}
	q.qtype, q.qclass = question.Qtype, question.Qclass
	q.edns, q.do, q.udpSize = false, false, 0
	if opt := r.IsEdns0(); opt != nil {
		q.edns, q.do, q.udpSize = true, opt.Do(), opt.UDPSize()
	}
	q.key[n] = byte(q.qtype >> 8)
	q.key[n+1] = byte(q.qtype)
	q.key[n+2] = byte(q.qclass >> 8)
	q.key[n+3] = byte(q.qclass)
	q.key[n+4] = q.cacheFlags()
	return true
}

// lowerASCII lowercases a domain name: DNS compares names ASCII-case-
// insensitively, and miekg/dns escapes every other byte.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// peer returns the client address and whether it asked over UDP.
func peer(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), false
	}
	return netip.Addr{}, false
}
