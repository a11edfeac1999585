package dhcpd

import (
	"sync"
	"time"
)

// queue is the FIFO from the store's committer to a server's replier: the
// finished store writes. It never blocks the producer (the committer must
// never wait), and its memory grows with what is queued, so the queues of
// hundreds of idle networks hold nothing, where channels held their whole
// capacity.
type queue[T any] struct {
	mu     sync.Mutex
	q      []T
	closed bool
	wake   chan struct{}
}

// push queues x.
func (c *queue[T]) push(x T) {
	c.mu.Lock()
	c.q = append(c.q, x)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *queue[T]) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take waits for completions; it returns nil once closed and drained.
func (c *queue[T]) take(buf []T) []T {
	for {
		c.mu.Lock()
		buf, c.q = c.q, buf[:0]
		closed := c.closed
		c.mu.Unlock()
		switch {
		case len(buf) > 0:
			return buf
		case closed:
			return nil
		}
		<-c.wake
	}
}

// A group commit makes every lease in it durable at the same instant, so
// without pacing its replies leave in one burst: at thousands of clients a
// second that is hundreds of datagrams within microseconds, more than a
// client's socket buffer holds (perfdhcp's 212 kB default overflowed while
// its average rate was well within reach, bench/RESULTS.md). The pacer
// sends a batch in chunks spread over the time the batch took to gather,
// which keeps the average rate and the order, and adds at most that time
// (capped) to a reply's latency.
const (
	paceChunk     = 16
	maxPaceWindow = 20 * time.Millisecond
)

type pacer struct {
	last  time.Time // when the previous batch arrived
	now   func() time.Time
	sleep func(time.Duration)
}

func newPacer() *pacer { return &pacer{now: time.Now, sleep: time.Sleep} }

// spread calls send for the chunks [lo, hi) of 0..n-1 in order, pausing
// between them.
func (p *pacer) spread(n int, send func(lo, hi int)) {
	arrived := p.now()
	window := min(arrived.Sub(p.last), maxPaceWindow)
	p.last = arrived
	chunks := (n + paceChunk - 1) / paceChunk
	var gap time.Duration
	if chunks > 1 && window > 0 {
		gap = window / time.Duration(chunks)
	}
	for lo := 0; lo < n; lo += paceChunk {
		if lo > 0 && gap > 0 {
			p.sleep(gap)
		}
		send(lo, min(lo+paceChunk, n))
	}
}
