// Package leases is the durable store of DHCP leases handed out by vnetd's
// DHCP servers. The DHCP server writes it; the DNS server and the daemon
// (net-dhcp-leases) read it.
//
// Leases live in one bbolt bucket, keyed by network + "\x00" + the 16-byte
// form of the address, so that the leases of a network are a prefix scan.
// Values are JSON. Writes return only once they are fsync'd; concurrent
// writes are group-committed into one transaction.
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

// Batching parameters for group commit.
const (
	maxBatchDelay = time.Millisecond
	maxBatchSize  = 1000
)

var bucketLeases = []byte("leases")

// Store is the lease database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	mu       sync.Mutex
	closed   bool
	watchers map[string]map[*watcher]struct{}

	// txHook, when set (tests), is called inside every write transaction
	// that stores or deletes a single lease.
	txHook func(*bolt.Tx)
}

type watcher struct {
	ch chan struct{}
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
	db.MaxBatchDelay = maxBatchDelay
	db.MaxBatchSize = maxBatchSize
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLeases)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("lease store %s: %w", path, err)
	}
	return &Store{db: db, watchers: map[string]map[*watcher]struct{}{}}, nil
}

// Close closes the database and every Watch channel.
func (s *Store) Close() error {
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
// returns once the lease is durable. Concurrent Puts share a transaction.
// ctx is checked before the write is queued; once queued, the write
// completes regardless of ctx.
func (s *Store) Put(ctx context.Context, l Lease) error {
	l, err := normalize(l)
	if err != nil {
		return fmt.Errorf("storing lease: %w", err)
	}
	data, err := encode(l)
	if err != nil {
		return fmt.Errorf("storing lease %s/%s: %w", l.Network, l.IP, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storing lease %s/%s: %w", l.Network, l.IP, err)
	}
	k := key(l.Network, l.IP)
	err = s.db.Batch(func(tx *bolt.Tx) error {
		if s.txHook != nil {
			s.txHook(tx)
		}
		return tx.Bucket(bucketLeases).Put(k, data)
	})
	if err != nil {
		return fmt.Errorf("storing lease %s/%s: %w", l.Network, l.IP, err)
	}
	s.notify(l.Network)
	return nil
}

// Delete removes the lease of network for ip, if any, and returns once the
// removal is durable.
func (s *Store) Delete(ctx context.Context, network string, ip netip.Addr) error {
	if err := checkNetwork(network); err != nil {
		return fmt.Errorf("deleting lease: %w", err)
	}
	if !ip.IsValid() {
		return fmt.Errorf("deleting lease of %s: no IP address", network)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deleting lease %s/%s: %w", network, ip, err)
	}
	k := key(network, ip)
	err := s.db.Batch(func(tx *bolt.Tx) error {
		if s.txHook != nil {
			s.txHook(tx)
		}
		return tx.Bucket(bucketLeases).Delete(k)
	})
	if err != nil {
		return fmt.Errorf("deleting lease %s/%s: %w", network, ip, err)
	}
	s.notify(network)
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
	w := &watcher{ch: make(chan struct{}, 1)}
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
