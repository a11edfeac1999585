package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/dhcpd"
	"github.com/vnetd/vnetd/leases"
)

// eventBuffer is how many events a subscriber may fall behind before it is
// dropped: the Manager publishes with its lock held and must never wait for
// a reader.
const eventBuffer = 1024

var overflowDetail = fmt.Sprintf("the reader fell %d events behind; later events were not delivered", eventBuffer)

// EventBus hands the daemon's events (GET /v1/events, net-event) to its
// subscribers. Publishing never blocks: a subscriber whose buffer is full
// gets an overflow event and is dropped. Safe for concurrent use.
type EventBus struct {
	count atomic.Int32 // subscribers, read without the lock on the hot path

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewEventBus returns a bus without subscribers.
func NewEventBus() *EventBus {
	return &EventBus{subs: map[*Subscription]struct{}{}}
}

// Subscription receives the events of one network, or of all networks.
type Subscription struct {
	bus     *EventBus
	network string
	c       chan api.Event
}

// C delivers the events in the order they happened. It is closed after an
// overflow event, when the subscription is closed and when the bus is.
func (s *Subscription) C() <-chan api.Event { return s.c }

// Close ends the subscription.
func (s *Subscription) Close() {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remove(s)
}

// Subscribe starts delivering the events of network ("" for all).
func (b *EventBus) Subscribe(network string) *Subscription {
	// One slot more than the buffer, kept for the overflow event.
	s := &Subscription{bus: b, network: network, c: make(chan api.Event, eventBuffer+1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(s.c)
		return s
	}
	b.subs[s] = struct{}{}
	b.count.Add(1)
	return s
}

// listening reports whether anyone subscribes: publishers with costly
// events check first.
func (b *EventBus) listening() bool { return b != nil && b.count.Load() > 0 }

// Publish stamps e with the time and hands it to the subscribers it
// concerns.
func (b *EventBus) Publish(e api.Event) {
	if !b.listening() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e.Time = time.Now()
	for s := range b.subs {
		if s.network != "" && s.network != e.Network {
			continue
		}
		if len(s.c) >= eventBuffer {
			s.c <- api.Event{Time: e.Time, Type: api.EventOverflow, Detail: overflowDetail}
			b.remove(s)
			continue
		}
		s.c <- e
	}
}

// Close ends every subscription (the daemon is stopping) and refuses new
// ones.
func (b *EventBus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.remove(s)
	}
}

func (b *EventBus) remove(s *Subscription) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	b.count.Add(-1)
	close(s.c)
}

// Events is the Manager's event bus.
func (m *Manager) Events() *EventBus { return m.cfg.Events }

func (m *Manager) emit(typ, network string) {
	m.cfg.Events.Publish(api.Event{Type: typ, Network: network})
}

func (m *Manager) emitPort(typ, network, port string) {
	m.cfg.Events.Publish(api.Event{Type: typ, Network: network, Port: port})
}

// leaseEvents is the lease store as one network's DHCP servers see it: it
// passes their writes through and, once a write is durable, publishes which
// addresses were leased or given back. A renewal (the same holder storing
// the same address again) is no event.
type leaseEvents struct {
	dhcpd.LeaseStore
	network string
	bus     *EventBus

	mu      sync.Mutex
	holders map[netip.Addr]string // address -> holder (see holder)
}

// newLeaseEvents starts from the leases the store holds for network.
func newLeaseEvents(store dhcpd.LeaseStore, network string, bus *EventBus) (*leaseEvents, error) {
	l := &leaseEvents{LeaseStore: store, network: network, bus: bus, holders: map[netip.Addr]string{}}
	stored, err := store.List(network)
	if err != nil {
		return nil, err
	}
	for _, lease := range stored {
		l.holders[lease.IP] = holder(lease)
	}
	return l, nil
}

// holder identifies who holds a lease: the MAC's bytes, or for a DHCPv6
// client whose MAC is unknown its DUID (text, so never 6 bytes long).
// Comparing with a stored holder does not allocate, which matters on the
// DHCP servers' write path.
func holder(l leases.Lease) string {
	if len(l.MAC) > 0 {
		return string(l.MAC)
	}
	return l.DUID
}

// holderString is a holder as events show it.
func holderString(h string) string {
	if len(h) == 6 {
		return net.HardwareAddr(h).String()
	}
	return h
}

func (l *leaseEvents) Apply(c leases.Changes, done func(error)) {
	l.LeaseStore.Apply(c, func(err error) {
		if err == nil {
			l.committed(c)
		}
		done(err)
	})
}

// committed publishes what c changed, deletes first as the store applies
// them.
func (l *leaseEvents) committed(c leases.Changes) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range c.Delete {
		if k.Network != l.network {
			continue
		}
		if h, ok := l.holders[k.IP]; ok {
			delete(l.holders, k.IP)
			l.publish(api.EventLeaseRemoved, k.IP, h, "")
		}
	}
	for _, lease := range c.Put {
		if lease.Network != l.network {
			continue
		}
		old, ok := l.holders[lease.IP]
		if ok && old == holder(lease) {
			continue // a renewal
		}
		if ok {
			l.publish(api.EventLeaseRemoved, lease.IP, old, "")
		}
		h := holder(lease)
		l.holders[lease.IP] = h
		l.publish(api.EventLeaseAdded, lease.IP, h, lease.Hostname)
	}
}

func (l *leaseEvents) publish(typ string, ip netip.Addr, holder, hostname string) {
	if !l.bus.listening() {
		return
	}
	l.bus.Publish(api.Event{Type: typ, Network: l.network, IP: ip.String(), MAC: holderString(holder), Hostname: hostname})
}

// events streams the events (of ?network=NAME|UUID) as JSON lines, each
// flushed as it happens, until the client goes, the subscriber overflows or
// the daemon stops.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	network := r.URL.Query().Get("network")
	if network != "" {
		// A UUID must name a known network; a name may be one yet to be
		// defined, whose defined event the client waits for.
		info, err := h.m.Info(network)
		switch {
		case err == nil:
			network = info.Name
		case uuid.Validate(network) == nil:
			h.fail(w, err)
			return
		}
	}
	sub := h.m.Events().Subscribe(network)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			if enc.Encode(e) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
