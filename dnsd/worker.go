package dnsd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/miekg/dns"
)

// worker reads one UDP socket and answers in line: local names and cached
// answers without allocating, everything else through the slow path.
// Only queries that must wait for an upstream get a goroutine (bounded by
// the handler's semaphore), so the reader never blocks on the network.
type worker struct {
	h    *handler
	conn *net.UDPConn
	// send writes an answer; the socket's WriteToUDPAddrPort, or a
	// recorder in tests.
	send func(b []byte, to netip.AddrPort) error
	ctx  context.Context
	wg   *sync.WaitGroup
	out  []byte // the answer being built
	// iface is the index of the bridge, the only interface (with the
	// host's loopback) a query may arrive on; 0 when the reader does not
	// check (tests that hand it datagrams).
	iface int
	st    counters
}

func newWorker(h *handler, conn *net.UDPConn, ctx context.Context, wg *sync.WaitGroup) *worker {
	// out is made on first use (ensureOut): most networks' readers only
	// ever take the fast path, and hundreds of networks each have several.
	w := &worker{h: h, conn: conn, ctx: ctx, wg: wg}
	if conn != nil {
		w.send = func(b []byte, to netip.AddrPort) error {
			_, err := conn.WriteToUDPAddrPort(b, to)
			return err
		}
	}
	return w
}

// handle answers one datagram.
func (w *worker) handle(pkt []byte, from netip.AddrPort) {
	w.ensureOut()
	if out := w.answer(pkt, from, w.out[:0]); out != nil {
		w.reply(out, from)
	}
}

// answer appends the fast path's answer to pkt to out and returns it; nil
// means the slow path took the packet (and answers it itself, now or once
// an upstream did).
func (w *worker) answer(pkt []byte, from netip.AddrPort, out []byte) []byte {
	defer w.h.recoverQuery(&w.st, from.Addr())
	z := w.h.zone.Load()
	src := from.Addr().Unmap()
	var q query
	if z.allowed(src) && parseQuery(pkt, &q) {
		start := len(out)
		if out = w.fast(z, &q, out); out != nil {
			w.st.query(q.qtype)
			w.st.rcode(int(out[start+3] & 0xf))
			return out
		}
	}
	w.slow(z, pkt, from, src)
	return nil
}

// fast appends the answer to q from the zone's packed answers or the
// cache to out, or returns nil.
func (w *worker) fast(z *zone, q *query, out []byte) []byte {
	start := len(out)
	if tmpl := z.fast[string(q.fastKey())]; tmpl != nil {
		if out = appendReply(out, tmpl, q); len(out)-start <= q.maxUDP() {
			return out
		}
		return nil
	}
	if _, local := z.wire[string(q.nameKey())]; local {
		return nil
	}
	// Only forwarded names are cached, under the forwarding rules of this
	// zone's network definition (Update empties the cache).
	now := w.h.now()
	e := w.h.cache.get(q.cacheKey(), now)
	if e == nil {
		return nil
	}
	if out = appendEntry(out, e, q, now); len(out)-start > q.maxUDP() {
		return nil
	}
	w.st.cacheHits.Add(1)
	return out
}

func (w *worker) ensureOut() {
	if w.out == nil {
		w.out = make([]byte, 65535)
	}
}

func (w *worker) slow(z *zone, pkt []byte, from netip.AddrPort, src netip.Addr) {
	w.ensureOut()
	h := w.h
	r := new(dns.Msg)
	if err := r.Unpack(pkt); err != nil {
		w.st.malformed.Add(1)
		h.lim.Log(h.log, slog.LevelDebug, "malformed DNS packet dropped", "client", from, "err", err)
		return
	}
	m, j := h.plan(z, r, src, &w.st)
	switch {
	case m == nil && j == nil:
		return
	case j != nil:
		out := h.fromCache(j, w.out[:0], &w.st)
		if out == nil {
			w.forward(j, from)
			return
		}
		if len(out) <= j.q.maxUDP() {
			w.st.rcode(int(out[3] & 0xf))
			w.reply(out, from)
			return
		}
		if m = new(dns.Msg); m.Unpack(out) != nil {
			m = reply(dns.RcodeServerFailure)
		}
	}
	m = finish(r, m, true)
	w.st.rcode(m.Rcode)
	out, err := m.PackBuffer(w.out[:cap(w.out)])
	if err != nil {
		return
	}
	w.reply(out, from)
}

// forward hands j to a goroutine that waits for the upstream, unless too
// many already wait: then the query is dropped and the client retries.
func (w *worker) forward(j *job, from netip.AddrPort) {
	h := w.h
	if !h.acquireForward(&w.st) {
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-h.sem }()
		defer h.recoverQuery(&h.st, from.Addr())
		m := finish(j.r, h.forward(w.ctx, j, &h.st), true)
		h.st.rcode(m.Rcode)
		out, err := m.Pack()
		if err == nil && w.ctx.Err() == nil {
			w.reply(out, from)
		}
	}()
}

func (w *worker) reply(b []byte, to netip.AddrPort) {
	if err := w.send(b, to); err != nil && w.ctx.Err() == nil {
		w.h.lim.Log(w.h.log, slog.LevelWarn, "cannot send DNS answer", "client", to, "err", err)
	}
}
