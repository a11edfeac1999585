package dnsd

import (
	"encoding/binary"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Cache bounds. dnsmasq keeps 150 names by default (libvirt does not change
// it); a few thousand answers cost little here and keep guests' lookups
// local. An entry is at most maxCacheEntry bytes, so the cache holds at
// most cacheEntries*maxCacheEntry bytes; cacheBytes bounds it tighter.
const (
	cacheShards   = 16
	cacheEntries  = 10000
	cacheBytes    = 8 << 20
	maxCacheEntry = 8 << 10
	// maxCacheTTL caps positive answers, maxNegTTL negative ones (RFC 2308
	// §5 suggests one to three hours).
	maxCacheTTL = 24 * time.Hour
	maxNegTTL   = 3 * time.Hour
)

// cache holds upstream answers in packed form, ready to be copied into a
// reply: the ID, RD/CD bits, the name's spelling and the TTLs are patched
// when served. It is safe for concurrent use.
type cache struct {
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]*entry
	order []string // insertion order: the oldest entry is evicted first
	head  int      // order[:head] are gone
	bytes int
}

// entry is one cached answer: msg has ID 0, the question's name in
// lowercase, no OPT record, and the TTLs as received.
type entry struct {
	msg     []byte
	ttlOffs []uint16
	stored  time.Time
	expires time.Time
}

func newCache() *cache {
	c := &cache{}
	for i := range c.shards {
		c.shards[i].m = map[string]*entry{}
	}
	return c
}

func shardOf(key []byte) int {
	h := uint32(2166136261)
	for _, b := range key {
		h ^= uint32(b)
		h *= 16777619
	}
	return int(h % cacheShards)
}

// get returns the live entry for key, or nil.
func (c *cache) get(key []byte, now time.Time) *entry {
	sh := &c.shards[shardOf(key)]
	sh.mu.RLock()
	e := sh.m[string(key)]
	sh.mu.RUnlock()
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

// put stores the upstream answer m to the question of key, if it may be
// cached: a positive answer for its smallest TTL, a negative one (NXDOMAIN,
// or NOERROR without answers) for its SOA's negative TTL (RFC 2308 §5),
// nothing else.
func (c *cache) put(key string, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok || ttl <= 0 {
		return
	}
	m = m.Copy()
	m.Id = 0
	m.Opcode = dns.OpcodeQuery
	m.RecursionDesired = false
	m.CheckingDisabled = false
	m.Truncated = false
	m.Question[0].Name = strings.ToLower(m.Question[0].Name)
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	negativeSOA(m)
	m.Compress = true
	packed, err := m.Pack()
	if err != nil || len(packed) > maxCacheEntry {
		return
	}
	offs, ok := ttlOffsets(packed)
	if !ok {
		return
	}
	e := &entry{msg: packed, ttlOffs: offs, stored: now, expires: now.Add(ttl)}
	sh := &c.shards[shardOf([]byte(key))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[key]; old != nil {
		sh.bytes -= len(old.msg)
	} else {
		sh.order = append(sh.order, key)
	}
	sh.m[key] = e
	sh.bytes += len(packed)
	for len(sh.m) > cacheEntries/cacheShards || sh.bytes > cacheBytes/cacheShards {
		victim := sh.order[sh.head]
		sh.order[sh.head] = ""
		sh.head++
		if old := sh.m[victim]; old != nil {
			sh.bytes -= len(old.msg)
			delete(sh.m, victim)
		}
	}
	if sh.head > len(sh.order)/2 {
		sh.order = append(sh.order[:0], sh.order[sh.head:]...)
		sh.head = 0
	}
}

// flush forgets everything: the forwarding rules changed.
func (c *cache) flush() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.m = map[string]*entry{}
		sh.order, sh.head, sh.bytes = nil, 0, 0
		sh.mu.Unlock()
	}
}

// len is the number of entries, expired ones included.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// appendEntry appends the answer of e to q, its TTLs lowered by the time
// it spent in the cache.
func appendEntry(out []byte, e *entry, q *query, now time.Time) []byte {
	start := len(out)
	out = appendReply(out, e.msg, q)
	msg := out[start:]
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttlOffs {
		ttl := binary.BigEndian.Uint32(e.msg[off:])
		if ttl > age {
			ttl -= age
		} else {
			ttl = 0
		}
		binary.BigEndian.PutUint32(msg[off:], ttl)
	}
	return out
}

// negativeSOA gives the SOA of a negative answer its negative TTL, the
// smaller of its TTL and its MINIMUM (RFC 2308 §3), so that the client
// caches the answer exactly as long as this server does.
func negativeSOA(m *dns.Msg) {
	if !isNegative(m) {
		return
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl, uint32(maxNegTTL/time.Second))
		}
	}
}

func isNegative(m *dns.Msg) bool {
	return m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0
}

// cacheTTL is how long m may be cached.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || len(m.Question) != 1 {
		return 0, false
	}
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return 0, false
	}
	if isNegative(m) {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl := min(soa.Hdr.Ttl, soa.Minttl)
				return min(time.Duration(ttl)*time.Second, maxNegTTL), true
			}
		}
		return 0, false // no SOA: RFC 2308 §5 says do not cache
	}
	ttl := uint32(1<<32 - 1)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype != dns.TypeOPT {
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
	}
	return min(time.Duration(ttl)*time.Second, maxCacheTTL), true
}
