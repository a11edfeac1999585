package dnsd

import (
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Stats counts what a server did since New.
type Stats struct {
	// Queries counts the questions asked, by query type ("A", "AAAA",
	// "PTR", ...; "other" for the rest). Malformed packets are not
	// queries.
	Queries map[string]uint64
	// Responses counts the answers sent, by response code ("NOERROR",
	// "NXDOMAIN", "REFUSED", ...).
	Responses map[string]uint64
	// CacheHits and CacheMisses count lookups of forwarded names in the
	// cache; CacheEntries is its size now.
	CacheHits    uint64
	CacheMisses  uint64
	CacheEntries int
	// Forwarded counts questions sent upstream (identical concurrent
	// questions share one); UpstreamErrors the upstream attempts that
	// failed or timed out.
	Forwarded      uint64
	UpstreamErrors uint64
	// Malformed counts packets dropped because they did not decode (or
	// were not queries); Overflow the queries dropped because too many
	// were already waiting for upstreams; Refused the queries from
	// clients outside the network.
	Malformed uint64
	Overflow  uint64
	Refused   uint64
	// WrongInterface counts the UDP queries dropped because they arrived
	// on an interface other than the network's bridge (a neighbour on the
	// uplink); Panics the queries dropped because handling them panicked.
	WrongInterface uint64
	Panics         uint64
	// TCPConnections is the number of TCP connections open now;
	// TCPRejectedGlobal and TCPRejectedPerClient count those closed at
	// once because the server (maxTCPConns) or their client
	// (maxTCPPerClient) already held as many as it may.
	TCPConnections       int
	TCPRejectedGlobal    uint64
	TCPRejectedPerClient uint64
	// UpstreamLatency is the total time of the upstream exchanges that got
	// an answer, UpstreamAnswers their number.
	UpstreamLatency time.Duration
	UpstreamAnswers uint64
	// UpstreamLatencyBuckets counts those exchanges by time taken: bucket
	// i those over UpstreamLatencyBounds[i-1] up to UpstreamLatencyBounds[i],
	// the last one those over every bound. Not cumulative.
	UpstreamLatencyBuckets [len(UpstreamLatencyBounds) + 1]uint64
}

// UpstreamLatencyBounds are the upper bounds of the upstream latency
// buckets: from a resolver on the LAN to one answering over TCP after a
// truncated UDP answer, near the timeout of each.
var UpstreamLatencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// latencyBucket is the bucket of UpstreamLatencyBuckets that d goes in.
func latencyBucket(d time.Duration) int {
	for i, b := range UpstreamLatencyBounds {
		if d <= b {
			return i
		}
	}
	return len(UpstreamLatencyBounds)
}

// qtypeSlots are the query types counted on their own.
var qtypeSlots = [...]uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeTXT, dns.TypeSRV, dns.TypeMX,
	dns.TypeNS, dns.TypeSOA, dns.TypeCNAME, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY}

const otherSlot = len(qtypeSlots)

func qtypeSlot(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	}
	for i, s := range qtypeSlots {
		if s == t {
			return i
		}
	}
	return otherSlot
}

// counters are updated without locks. Each UDP reader has its own, so
// that the hot path never shares a cache line with another core; the
// server has one more for TCP and forwarding goroutines.
type counters struct {
	queries        [otherSlot + 1]atomic.Uint64
	rcodes         [17]atomic.Uint64 // 16: extended codes
	cacheHits      atomic.Uint64
	cacheMisses    atomic.Uint64
	forwarded      atomic.Uint64
	upstreamErrors atomic.Uint64
	malformed      atomic.Uint64
	overflow       atomic.Uint64
	refused        atomic.Uint64
	wrongIface     atomic.Uint64
	panics         atomic.Uint64
	tcpGlobal      atomic.Uint64
	tcpPerClient   atomic.Uint64
	latencyNanos   atomic.Uint64
	latencyCount   atomic.Uint64
	latency        [len(UpstreamLatencyBounds) + 1]atomic.Uint64
	_              [64]byte
}

// upstreamAnswer counts an upstream exchange that got an answer in d.
func (c *counters) upstreamAnswer(d time.Duration) {
	c.latencyNanos.Add(uint64(d))
	c.latencyCount.Add(1)
	c.latency[latencyBucket(d)].Add(1)
}

func (c *counters) query(t uint16) { c.queries[qtypeSlot(t)].Add(1) }

func (c *counters) rcode(r int) {
	if r < 0 || r > 15 {
		r = 16
	}
	c.rcodes[r].Add(1)
}

func (s *Stats) add(c *counters) {
	for i := range c.queries {
		if v := c.queries[i].Load(); v > 0 {
			name := "other"
			if i < otherSlot {
				name = dns.TypeToString[qtypeSlots[i]]
			}
			s.Queries[name] += v
		}
	}
	for i := range c.rcodes {
		if v := c.rcodes[i].Load(); v > 0 {
			name := "other"
			if i < 16 {
				name = dns.RcodeToString[i]
			}
			s.Responses[name] += v
		}
	}
	s.CacheHits += c.cacheHits.Load()
	s.CacheMisses += c.cacheMisses.Load()
	s.Forwarded += c.forwarded.Load()
	s.UpstreamErrors += c.upstreamErrors.Load()
	s.Malformed += c.malformed.Load()
	s.Overflow += c.overflow.Load()
	s.Refused += c.refused.Load()
	s.WrongInterface += c.wrongIface.Load()
	s.Panics += c.panics.Load()
	s.TCPRejectedGlobal += c.tcpGlobal.Load()
	s.TCPRejectedPerClient += c.tcpPerClient.Load()
	s.UpstreamLatency += time.Duration(c.latencyNanos.Load())
	s.UpstreamAnswers += c.latencyCount.Load()
	for i := range c.latency {
		s.UpstreamLatencyBuckets[i] += c.latency[i].Load()
	}
}
