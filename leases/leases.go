// Package leases is the durable store of DHCP leases handed out by vnetd's
// DHCP servers. The DHCP server writes it; the DNS server and the daemon
// (net-dhcp-leases) read it.
//
// Leases live in one bbolt bucket, keyed by network + "\x00" + the 16-byte
// form of the address, so that the leases of a network are a prefix scan.
// Values are JSON. Writes are reported done only once they are fsync'd.
// They go through one committer goroutine in the order they were submitted:
// everything submitted while a commit is running goes into the next one
// (group commit), so durability costs one fsync per batch, not per lease,
// and no fixed batching delay is added at low load.
package leases

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Kind is the address family of a lease.
type Kind uint8

const (
	// V4 is a DHCPv4 lease.
	V4 Kind = iota + 1
	// V6 is a DHCPv6 lease.
	V6
)

// String returns "ipv4" or "ipv6", the names net-dhcp-leases uses.
func (k Kind) String() string {
	switch k {
	case V4:
		return "ipv4"
	case V6:
		return "ipv6"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

func parseKind(s string) (Kind, error) {
	switch s {
	case "ipv4":
		return V4, nil
	case "ipv6":
		return V6, nil
	}
	return 0, fmt.Errorf("unknown lease kind %q", s)
}

// Lease is one DHCP lease.
type Lease struct {
	Network  string
	Kind     Kind
	IP       netip.Addr
	Prefix   int              // the <ip>'s prefix length, for display
	MAC      net.HardwareAddr // v4; v6 when known
	ClientID string           // DHCPv4 option 61 as hex "01:52:54:..."; "" if none
	DUID     string           // DHCPv6 client DUID, hex bytes joined with ':'
	IAID     uint32
	Hostname string
	Expiry   time.Time // zero: infinite
}

// Expired reports whether the lease ran out before now. A lease with a zero
// Expiry never expires. As in libvirt, a lease expiring exactly at now is
// still valid.
func (l Lease) Expired(now time.Time) bool {
	return !l.Expiry.IsZero() && l.Expiry.Before(now)
}

var bucketLeases = []byte("leases")

// Store is the lease database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	mu       sync.Mutex
	closed   bool
	watchers map[string]map[*watcher]struct{}

	// The write queue: Apply appends, the committer takes it all.
	qmu     sync.Mutex
	queue   []pending
	qclosed bool
	wake    chan struct{} // one pending signal to the committer
	stopped chan struct{} // closed when the committer has returned

	// txHook, when set (tests), is called inside every write transaction.
	txHook func(*bolt.Tx)
}

// Changes is one atomic write: leases to store (replacing the lease of the
// same network and address) and addresses whose lease to remove. Deletes
// are applied before puts.
type Changes struct {
	Put    []Lease
	Delete []Key
}

// Key names the lease of an address in a network.
type Key struct {
	Network string
	IP      netip.Addr
}

// ErrClosed is reported for writes submitted to, or pending in, a closed
// Store.
var ErrClosed = errors.New("lease store closed")

type pending struct {
	puts     []putRecord
	dels     [][]byte
	networks []string
	changes  Changes // as submitted, for the watchers' filters
	done     func(error)
}

type putRecord struct {
	key, value []byte
}

type watcher struct {
	ch       chan struct{}
	relevant func(Changes) bool // nil: every change
}

// Open opens (creating if needed) the lease database at path. The parent
// directory is created with mode 0700.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lease store dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("lease store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLeases)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("lease store %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		watchers: map[string]map[*watcher]struct{}{},
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

// Close closes the database and every Watch channel. Writes already
// submitted are committed first; later ones fail with ErrClosed.
func (s *Store) Close() error {
	s.qmu.Lock()
	already := s.qclosed
	s.qclosed = true
	s.qmu.Unlock()
	if !already {
		s.signal()
	}
	<-s.stopped
	s.mu.Lock()
	s.closed = true
	for _, ws := range s.watchers {
		for w := range ws {
			close(w.ch)
		}
	}
	s.watchers = map[string]map[*watcher]struct{}{}
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing lease store: %w", err)
	}
	return nil
}

// record is the on-disk form of a Lease.
type record struct {
	Network  string `json:"network"`
	Kind     string `json:"kind"`
	IP       string `json:"ip"`
	Prefix   int    `json:"prefix,omitempty"`
	MAC      string `json:"mac,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	DUID     string `json:"duid,omitempty"`
	IAID     uint32 `json:"iaid,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Expiry   string `json:"expiry,omitempty"` // RFC 3339; "" = infinite
}

func encode(l Lease) ([]byte, error) {
	r := record{
		Network:  l.Network,
		Kind:     l.Kind.String(),
		IP:       l.IP.String(),
		Prefix:   l.Prefix,
		ClientID: l.ClientID,
		DUID:     l.DUID,
		IAID:     l.IAID,
		Hostname: l.Hostname,
	}
	if len(l.MAC) > 0 {
		r.MAC = l.MAC.String()
	}
	if !l.Expiry.IsZero() {
		r.Expiry = l.Expiry.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(r)
}

func decode(data []byte) (Lease, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return Lease{}, err
	}
	l := Lease{
		Network:  r.Network,
		Prefix:   r.Prefix,
		ClientID: r.ClientID,
		DUID:     r.DUID,
		IAID:     r.IAID,
		Hostname: r.Hostname,
	}
	var err error
	if l.Kind, err = parseKind(r.Kind); err != nil {
		return Lease{}, err
	}
	if l.IP, err = netip.ParseAddr(r.IP); err != nil {
		return Lease{}, err
	}
	if r.MAC != "" {
		if l.MAC, err = net.ParseMAC(r.MAC); err != nil {
			return Lease{}, err
		}
	}
	if r.Expiry != "" {
		if l.Expiry, err = time.Parse(time.RFC3339Nano, r.Expiry); err != nil {
			return Lease{}, err
		}
	}
	return l, nil
}

func checkNetwork(network string) error {
	if network == "" {
		return errors.New("empty network name")
	}
	if strings.IndexByte(network, 0) >= 0 {
		return fmt.Errorf("network name %q contains NUL", network)
	}
	return nil
}

// normalize validates l and returns it with its address in canonical form
// (IPv4 unmapped, no zone).
func normalize(l Lease) (Lease, error) {
	if err := checkNetwork(l.Network); err != nil {
		return l, err
	}
	if !l.IP.IsValid() {
		return l, errors.New("lease has no IP address")
	}
	ip := l.IP.WithZone("")
	switch l.Kind {
	case V4:
		ip = ip.Unmap()
		if !ip.Is4() {
			return l, fmt.Errorf("ipv4 lease with address %s", l.IP)
		}
	case V6:
		if !ip.Is6() || ip.Is4In6() {
			return l, fmt.Errorf("ipv6 lease with address %s", l.IP)
		}
	default:
		return l, fmt.Errorf("lease %s: invalid kind %v", l.IP, l.Kind)
	}
	l.IP = ip
	return l, nil
}

func networkPrefix(network string) []byte {
	return append([]byte(network), 0)
}

func key(network string, ip netip.Addr) []byte {
	a := ip.As16()
	return append(networkPrefix(network), a[:]...)
}

// Put stores l, replacing any lease of the same network and address. It
// returns once the lease is durable. ctx is checked before the write is
// queued; once queued, the write completes regardless of ctx.
func (s *Store) Put(ctx context.Context, l Lease) error {
	return s.wait(ctx, Changes{Put: []Lease{l}})
}

// Delete removes the lease of network for ip, if any, and returns once the
// removal is durable.
func (s *Store) Delete(ctx context.Context, network string, ip netip.Addr) error {
	return s.wait(ctx, Changes{Delete: []Key{{Network: network, IP: ip}}})
}

func (s *Store) wait(ctx context.Context, c Changes) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing leases: %w", err)
	}
	ch := make(chan error, 1)
	s.Apply(c, func(err error) { ch <- err })
	return <-ch
}

// Apply submits c and returns at once; done is called once c is durable,
// or with the error that kept it from being written (then none of c is).
// Changes are committed in the order Apply was called, so a caller that
// decides under its own lock and submits under it gets its decisions
// stored in that order. done runs on the store's committer goroutine: it
// must not block or call back into the Store's writes.
func (s *Store) Apply(c Changes, done func(error)) {
	p, err := prepare(c)
	if err != nil {
		done(err)
		return
	}
	p.done, p.changes = done, c
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		done(ErrClosed)
		return
	}
	s.queue = append(s.queue, p)
	s.qmu.Unlock()
	s.signal()
}

// prepare validates and encodes c outside the commit, so that a bad lease
// fails alone and the committer only copies bytes.
func prepare(c Changes) (pending, error) {
	var p pending
	seen := map[string]bool{}
	addNetwork := func(n string) {
		if !seen[n] {
			seen[n] = true
			p.networks = append(p.networks, n)
		}
	}
	for _, k := range c.Delete {
		if err := checkNetwork(k.Network); err != nil {
			return p, fmt.Errorf("deleting lease: %w", err)
		}
		if !k.IP.IsValid() {
			return p, fmt.Errorf("deleting lease of %s: no IP address", k.Network)
		}
		p.dels = append(p.dels, key(k.Network, k.IP))
		addNetwork(k.Network)
	}
	for _, l := range c.Put {
		l, err := normalize(l)
		if err != nil {
			return p, fmt.Errorf("storing lease: %w", err)
		}
		data, err := encode(l)
		if err != nil {
			return p, fmt.Errorf("storing lease %s/%s: %w", l.Network, l.IP, err)
		}
		p.puts = append(p.puts, putRecord{key: key(l.Network, l.IP), value: data})
		addNetwork(l.Network)
	}
	return p, nil
}

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// commitLoop is the committer: it writes whatever is queued in one
// transaction, reports, and repeats; it returns once the queue is closed
// and drained.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	var batch []pending
	for range s.wake {
		for {
			s.qmu.Lock()
			batch, s.queue = s.queue, batch[:0]
			closed := s.qclosed
			s.qmu.Unlock()
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			s.commit(batch)
			clear(batch) // drop the done funcs and records
		}
	}
}

// commit writes batch in one transaction. Should the transaction fail, each
// write is tried alone, so that one bad write does not fail the others.
func (s *Store) commit(batch []pending) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if s.txHook != nil {
			s.txHook(tx)
		}
		b := tx.Bucket(bucketLeases)
		for i := range batch {
			if err := writeTx(b, &batch[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for i := range batch {
			s.commit(batch[i : i+1])
		}
		return
	}
	if err != nil {
		err = fmt.Errorf("writing leases: %w", err)
	} else {
		changed := map[string][]*Changes{}
		for i := range batch {
			for _, n := range batch[i].networks {
				changed[n] = append(changed[n], &batch[i].changes)
			}
		}
		for n, cs := range changed {
			s.notifyChanges(n, cs)
		}
	}
	for i := range batch {
		batch[i].done(err)
	}
}

func writeTx(b *bolt.Bucket, p *pending) error {
	for _, k := range p.dels {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for _, r := range p.puts {
		if err := b.Put(r.key, r.value); err != nil {
			return err
		}
	}
	return nil
}

// List returns every lease of network, expired ones included, sorted by
// address (IPv4 before IPv6).
func (s *Store) List(network string) ([]Lease, error) {
	if err := checkNetwork(network); err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	prefix := networkPrefix(network)
	var out []Lease
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLeases).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			l, err := decode(v)
			if err != nil {
				return fmt.Errorf("lease record %q: %w", k, err)
			}
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing leases of %s: %w", network, err)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// Sweep deletes the leases of every network that expired before now and
// returns how many it deleted.
func (s *Store) Sweep(now time.Time) (int, error) {
	changed := map[string]bool{}
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		clear(changed)
		n = 0
		b := tx.Bucket(bucketLeases)
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			l, err := decode(v)
			if err != nil {
				return fmt.Errorf("lease record %q: %w", k, err)
			}
			if l.Expired(now) {
				expired = append(expired, bytes.Clone(k))
				changed[l.Network] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweeping expired leases: %w", err)
	}
	for network := range changed {
		s.notify(network)
	}
	return n, nil
}

// DeleteNetwork removes every lease of network.
func (s *Store) DeleteNetwork(network string) error {
	if err := checkNetwork(network); err != nil {
		return fmt.Errorf("deleting leases: %w", err)
	}
	prefix := networkPrefix(network)
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLeases)
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting leases of %s: %w", network, err)
	}
	if n > 0 {
		s.notify(network)
	}
	return nil
}

// Networks returns the names of the networks that have leases, sorted.
func (s *Store) Networks() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLeases).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i <= 0 {
				return fmt.Errorf("malformed lease key %q", k)
			}
			out = append(out, string(k[:i]))
			// Skip the rest of this network: its keys all sort below
			// name + "\x01".
			next := append([]byte(nil), k[:i]...)
			k, _ = c.Seek(append(next, 1))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing lease networks: %w", err)
	}
	return out, nil
}

// Watch returns a channel that receives a value after every committed change
// to the leases of network, and a func that stops the notifications and
// closes the channel. Notifications are coalesced: the channel holds at
// most one pending value, and a slow reader only learns that something
// changed. Close closes every watch channel.
func (s *Store) Watch(network string) (<-chan struct{}, func()) {
	return s.WatchRelevant(network, nil)
}

// WatchRelevant is Watch for the changes relevant reports true for (nil:
// all). A reader that only cares about some leases (the DNS server: the
// ones with hostnames) is then not woken for every commit of a busy DHCP
// server, which made it re-read tens of thousands of leases hundreds of
// times a second. relevant runs on the committer goroutine: it must be
// quick and must not call the Store. Sweeps and DeleteNetwork notify every
// watcher.
func (s *Store) WatchRelevant(network string, relevant func(Changes) bool) (<-chan struct{}, func()) {
	w := &watcher{ch: make(chan struct{}, 1), relevant: relevant}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(w.ch)
		return w.ch, func() {}
	}
	ws := s.watchers[network]
	if ws == nil {
		ws = map[*watcher]struct{}{}
		s.watchers[network] = ws
	}
	ws[w] = struct{}{}
	cancel := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		ws := s.watchers[network]
		if _, ok := ws[w]; !ok {
			return // already cancelled, or closed by Close
		}
		delete(ws, w)
		if len(ws) == 0 {
			delete(s.watchers, network)
		}
		close(w.ch)
	}
	return w.ch, cancel
}

func (s *Store) notifyChanges(network string, cs []*Changes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers[network] {
		if w.relevant != nil && !slices.ContainsFunc(cs, func(c *Changes) bool { return w.relevant(*c) }) {
			continue
		}
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

func (s *Store) notify(network string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers[network] {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}
