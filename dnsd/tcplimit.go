package dnsd

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// TCP connection bounds of one server (all its addresses together).
//
// A connection costs an fd, a goroutine and its buffers (about 8 KiB of
// RSS measured with 3000 of them); without a bound one guest holding
// thousands took vnetd to its fd limit. Guests use TCP only after a
// truncated UDP answer, one query per connection (glibc, musl), so a
// network of a few hundred guests needs a handful at a time. dnsmasq
// serves at most 20 TCP connections (MAX_PROCS children); we keep
// the same order per client and, since a connection here is a goroutine
// rather than a process, room for many clients at once: 256 connections
// are 256 fds and under 5 MiB per network (measured, churn included).
const (
	maxTCPConns     = 256
	maxTCPPerClient = 16
)

// rejectReason says why a connection was refused; the zero value admits it.
type rejectReason uint8

const (
	admitted rejectReason = iota
	rejectGlobal
	rejectPerClient
)

// tcpLimiter counts the open connections of a server, in all and per
// client address.
type tcpLimiter struct {
	max, perClient int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
}

func newTCPLimiter(max, perClient int) *tcpLimiter {
	return &tcpLimiter{max: max, perClient: perClient, byAddr: map[netip.Addr]int{}}
}

// acquire takes a slot for a connection from client, or says why not.
func (l *tcpLimiter) acquire(client netip.Addr) rejectReason {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return rejectGlobal
	}
	if l.byAddr[client] >= l.perClient {
		return rejectPerClient
	}
	l.total++
	l.byAddr[client]++
	return admitted
}

// release gives back the slot of a connection from client.
func (l *tcpLimiter) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.byAddr[client] - 1; n > 0 {
		l.byAddr[client] = n
	} else {
		delete(l.byAddr, client)
	}
}

func (l *tcpLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// limitListener admits connections within its limiter's bounds and
// closes the others as soon as they are accepted: the kernel completes
// the handshake before we see a connection, so closing it is how it is
// refused.
type limitListener struct {
	net.Listener
	lim *tcpLimiter
	h   *handler // counts and logs the refused ones
}

// Accept returns the next connection within the bounds.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientOf(c.RemoteAddr())
		reason := l.lim.acquire(client)
		if reason == admitted {
			return &limitedConn{Conn: c, lim: l.lim, client: client}, nil
		}
		scope := "global"
		if reason == rejectGlobal {
			l.h.st.tcpGlobal.Add(1)
		} else {
			l.h.st.tcpPerClient.Add(1)
			scope = "per client"
		}
		if tc, ok := c.(*net.TCPConn); ok {
			// A reset: no TIME_WAIT left behind for each refused one.
			tc.SetLinger(0)
		}
		c.Close()
		l.h.lim.Log(l.h.log, slog.LevelWarn, "too many DNS TCP connections; closing a new one",
			"client", client, "bound", scope, "max", l.lim.max, "per_client", l.lim.perClient)
	}
}

// clientOf is the key of a connection's client: its address, without the
// zone (a link-local client is the same one whatever the zone says).
func clientOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	lim    *tcpLimiter
	client netip.Addr
	once   sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.lim.release(c.client) })
	return c.Conn.Close()
}
