package dnsd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Forwarding limits. A guest's resolver gives up after 5 s (glibc), so two
// upstreams that do not answer still leave it time for a SERVFAIL.
const (
	upstreamTimeout = 2 * time.Second
	// maxForwards bounds the queries waiting for upstreams (dnsmasq's
	// dns-forward-max is 150); beyond it queries are dropped and counted,
	// and the clients retry.
	maxForwards = 1024
)

// errNoUpstream: nowhere to forward to.
var errNoUpstream = errors.New("no upstream server")

// forwarder asks upstream servers, in strict order, one query at a time
// per question: concurrent identical questions share one upstream
// exchange.
type forwarder struct {
	// dial opens a connection to an upstream; tests replace it to reach
	// servers in other namespaces or on loopback ports.
	dial    func(ctx context.Context, network, address string) (net.Conn, error)
	timeout time.Duration

	mu       sync.Mutex
	inflight map[string]*flight
}

type flight struct {
	done chan struct{}
	m    *dns.Msg
	err  error
}

func newForwarder() *forwarder {
	d := &net.Dialer{}
	return &forwarder{dial: d.DialContext, timeout: upstreamTimeout, inflight: map[string]*flight{}}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

// upstreamQuery is what is sent upstream for client request r: the same
// question and RD/CD/AD bits, always with EDNS0 (so that answers up to
// ednsSize come over UDP) and the client's DO bit. The client's EDNS
// options are not passed on: they are hop-by-hop (cookies, padding,
// keepalive) or would make the shared cache answer per client (subnet).
func upstreamQuery(r *dns.Msg) *dns.Msg {
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.Opcode = dns.OpcodeQuery
	q.RecursionDesired = r.RecursionDesired
	q.CheckingDisabled = r.CheckingDisabled
	q.AuthenticatedData = r.AuthenticatedData
	q.Question = []dns.Question{r.Question[0]}
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	q.SetEdns0(ednsSize, do)
	return q
}

// resolve returns the upstream answer to q, sharing the exchange with
// concurrent callers asking the same key; onAnswer sees each answer once,
// before any caller. The answer is shared: callers must copy it before
// changing it.
func (f *forwarder) resolve(ctx context.Context, key string, q *dns.Msg, servers []netip.AddrPort, st *counters, onAnswer func(*dns.Msg)) (*dns.Msg, error) {
	f.mu.Lock()
	if fl := f.inflight[key]; fl != nil {
		f.mu.Unlock()
		select {
		case <-fl.done:
			return fl.m, fl.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	fl := &flight{done: make(chan struct{})}
	f.inflight[key] = fl
	f.mu.Unlock()

	st.forwarded.Add(1)
	fl.m, fl.err = f.exchange(ctx, q, servers, st)
	if fl.err == nil {
		onAnswer(fl.m)
	}
	f.mu.Lock()
	delete(f.inflight, key)
	f.mu.Unlock()
	close(fl.done)
	return fl.m, fl.err
}

// exchange tries the servers in order (dnsmasq's strict-order): the next
// one after a timeout, an error, SERVFAIL or REFUSED. A truncated UDP
// answer is asked again over TCP.
func (f *forwarder) exchange(ctx context.Context, q *dns.Msg, servers []netip.AddrPort, st *counters) (*dns.Msg, error) {
	if len(servers) == 0 {
		return nil, errNoUpstream
	}
	var last *dns.Msg
	var errs []error
	for _, srv := range servers {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		start := time.Now() // latency is real time, whatever the zone's clock
		ask := q
		m, err := f.exchangeOne(ctx, "udp", ask, srv)
		if err == nil && m.Rcode == dns.RcodeFormatError && m.IsEdns0() == nil {
			// A server that predates EDNS0 (RFC 6891 §7): ask it
			// again without.
			ask = q.Copy()
			ask.Extra = nil
			m, err = f.exchangeOne(ctx, "udp", ask, srv)
		}
		if err == nil && m.Truncated {
			m, err = f.exchangeOne(ctx, "tcp", ask, srv)
		}
		if err != nil {
			st.upstreamErrors.Add(1)
			errs = append(errs, fmt.Errorf("upstream %s: %w", srv, err))
			continue
		}
		st.upstreamAnswer(time.Since(start))
		if m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused {
			last = m
			errs = append(errs, fmt.Errorf("upstream %s: %s", srv, dns.RcodeToString[m.Rcode]))
			continue
		}
		return m, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, errors.Join(errs...)
}

// exchangeOne asks one server over network ("udp" or "tcp") within the
// forwarder's timeout.
func (f *forwarder) exchangeOne(ctx context.Context, network string, q *dns.Msg, srv netip.AddrPort) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c, err := f.dial(ctx, network, srv.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// Server shutdown must not wait for a slow upstream.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	packed, err := q.PackBuffer(buf[2:])
	if err != nil {
		return nil, fmt.Errorf("packing query: %w", err)
	}
	if network == "tcp" {
		binary.BigEndian.PutUint16(buf, uint16(len(packed)))
		if &buf[2] != &packed[0] {
			copy(buf[2:], packed)
		}
		if _, err := c.Write(buf[:2+len(packed)]); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(buf))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return nil, err
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			return nil, fmt.Errorf("malformed answer: %w", err)
		}
		if !answers(m, q) {
			return nil, errors.New("answer to another question")
		}
		return m, nil
	}
	if _, err := c.Write(packed); err != nil {
		return nil, err
	}
	for {
		// Stray datagrams (late answers, spoofing attempts) are skipped
		// until the deadline.
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !answers(m, q) {
			continue
		}
		return m, nil
	}
}

// answers reports whether m is the answer to q.
func answers(m, q *dns.Msg) bool {
	if m.Id != q.Id || !m.Response {
		return false
	}
	if len(m.Question) == 0 {
		// Some servers drop the question from error answers.
		return m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError
	}
	return len(m.Question) == 1 && m.Question[0].Qtype == q.Question[0].Qtype &&
		m.Question[0].Qclass == q.Question[0].Qclass && strings.EqualFold(m.Question[0].Name, q.Question[0].Name)
}
