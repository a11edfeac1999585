package dhcpd

import "sync"

// completions is an unbounded queue of finished store writes, from the
// store's committer to a server's replier: the committer must never block
// on a busy replier.
type completions[T any] struct {
	mu     sync.Mutex
	q      []T
	closed bool
	wake   chan struct{}
}

func (c *completions[T]) push(x T) {
	c.mu.Lock()
	c.q = append(c.q, x)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *completions[T]) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take waits for completions; it returns nil once closed and drained.
func (c *completions[T]) take(buf []T) []T {
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
