// Package leases is the durable store of DHCP leases handed out by vnetd's
// DHCP servers. The DHCP server writes it; the DNS server and the daemon
// (net-dhcp-leases) read it.
//
// The leases are held in memory and kept in a log file (log.go): every
// change is appended to it and fdatasync'd before it is reported done and
// before readers see it. Writes go through one committer goroutine in the
// order they were submitted: everything submitted while a commit is
// running goes into the next one (group commit), so durability costs one
// write and one fdatasync per batch, not per lease, and no fixed batching
// delay is added at low load.
package leases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
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

// Store is the lease database. It is safe for concurrent use.
type Store struct {
	path   string
	repair *Repair

	// The log and what the committer knows of it; only the committer (or
	// Open, before it starts) touches them.
	f          *os.File
	size       int64 // bytes in the log
	live       int64 // bytes of the put records of the live leases
	compactMin int64 // the log is never rewritten below this size
	broken     error // a failed write that could not be undone
	buf        []byte

	mu       sync.RWMutex
	nets     map[string]map[netip.Addr]entry
	closed   bool
	watchers map[string]map[*watcher]struct{}

	// The write queue: Apply appends, the committer takes it all.
	qmu     sync.Mutex
	queue   []pending
	qclosed bool
	wake    chan struct{} // one pending signal to the committer
	stopped chan struct{} // closed when the committer has returned

	// commitHook, when set (tests), is called with the number of changes
	// in every append to the log.
	commitHook func(changes int)
}

// entry is a live lease and the size of its put record in the log.
type entry struct {
	lease Lease
	size  int64
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
	puts     []Lease // normalised
	sizes    []int64 // of the puts' records, once encoded
	dels     []Key
	drops    []string // networks whose leases all go
	networks []string
	changes  Changes // as submitted, for the watchers' filters
	done     func(error)
	// plan, when set, decides the deletes and drops from the leases at
	// commit time (Sweep, DeleteNetwork); such a write is committed on
	// its own, after everything submitted before it.
	plan func(s *Store, p *pending)
}

type watcher struct {
	ch       chan struct{}
	relevant func(Changes) bool // nil: every change
}

const (
	// compactMin is the size below which the log is never rewritten.
	compactMin = 1 << 20
	// minSyncGap is the least time between the starts of two commits.
	minSyncGap = 2 * time.Millisecond
)

// timeNow names the copies of damaged logs (a variable for tests).
var timeNow = time.Now

// lockWait is how long Open waits for another process's lock (a variable
// for tests).
var lockWait = 2 * time.Second

// Open opens (creating if needed) the lease log at path and replays it. The
// parent directory is created with mode 0700. A record cut short by a
// crash while it was being written (it was never reported durable, so no
// client was acknowledged it) is cut off the end. Damage anywhere else
// (the disk's, not a crash's) costs the damaged records alone: Open first
// keeps a copy of the log as it found it, then keeps every intact record
// and rewrites the log without the damage. Repaired says what it did. The
// file is locked: a second vnetd on the same state directory fails here.
func Open(path string) (*Store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lease store dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lease store %s: %w", path, err)
	}
	s := &Store{
		path:       path,
		f:          f,
		compactMin: compactMin,
		nets:       map[string]map[netip.Addr]entry{},
		watchers:   map[string]map[*watcher]struct{}{},
		wake:       make(chan struct{}, 1),
		stopped:    make(chan struct{}),
	}
	if err := s.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("lease store %s: %w", path, err)
	}
	go s.commitLoop()
	return s, nil
}

// Repair is what Open found wrong with the log and did about it.
type Repair struct {
	// TornBytes were cut off the end of the log: an append that a crash
	// cut short, which was never reported durable.
	TornBytes int
	// Damaged is how many damaged stretches the log had before its end.
	// They held LostRecords records (exact when the damaged frames'
	// lengths survived, else one per stretch, the least it can be) in
	// LostBytes; those leases, deletes or drops are lost, and every intact
	// record around them was kept.
	Damaged, LostRecords, LostBytes int
	// Quarantine is the copy of the log as Open found it, written before
	// anything was changed when Damaged > 0, for a look at the damage.
	Quarantine string
	// Detail says what was wrong where the first damage (or the torn
	// tail) begins.
	Detail string
}

// MidFile reports whether the log was damaged before its end, which no
// crash does: the disk or something writing to the file did.
func (r *Repair) MidFile() bool { return r.Damaged > 0 }

func (r *Repair) String() string {
	if r.MidFile() {
		return fmt.Sprintf("%d damaged stretches (%d bytes, at least %d records lost) resynchronised past, torn tail %d bytes, damaged log kept as %s: %s",
			r.Damaged, r.LostBytes, r.LostRecords, r.TornBytes, r.Quarantine, r.Detail)
	}
	return fmt.Sprintf("cut %d bytes off the end of the lease log: %s", r.TornBytes, r.Detail)
}

// Repaired says what Open repaired in the log; nil if nothing.
func (s *Store) Repaired() *Repair { return s.repair }

// load locks the log, replays it, cuts a torn tail and rewrites the log if
// it is mostly dead records.
func (s *Store) load() error {
	if err := lockFile(s.f, lockWait); err != nil {
		return err
	}
	data, err := io.ReadAll(s.f)
	if err != nil {
		return err
	}
	if len(data) < len(logMagic) && strings.HasPrefix(logMagic, string(data)) {
		// New, or its creation was cut short by a crash.
		if err := s.f.Truncate(0); err != nil {
			return err
		}
		if _, err := s.f.WriteAt([]byte(logMagic), 0); err != nil {
			return err
		}
		if err := s.f.Sync(); err != nil {
			return err
		}
		s.size = int64(len(logMagic))
		if _, err := s.f.Seek(s.size, io.SeekStart); err != nil {
			return err
		}
		return syncDir(filepath.Dir(s.path))
	}
	if len(data) < len(logMagic) || string(data[:len(logMagic)]) != logMagic {
		return errors.New("not a vnetd lease log (bad header); move it away to start with no leases")
	}
	damage := scanLog(data, len(logMagic), s.replay)
	s.size = int64(len(data))
	if len(damage) == 0 {
		return s.seekEnd()
	}
	r := &Repair{Detail: damage[0].why.Error()}
	if last := damage[len(damage)-1]; last.end == len(data) {
		r.TornBytes = last.end - last.off
		damage = damage[:len(damage)-1]
	}
	for _, d := range damage {
		r.Damaged++
		r.LostRecords += d.records(data)
		r.LostBytes += d.end - d.off
	}
	s.repair = r
	if !r.MidFile() {
		good := len(data) - r.TornBytes
		if err := s.f.Truncate(int64(good)); err != nil {
			return fmt.Errorf("cutting the damaged tail: %w", err)
		}
		if err := s.f.Sync(); err != nil {
			return err
		}
		s.size = int64(good)
		return s.seekEnd()
	}
	// The damage goes with the rewrite below, so the log as it was is
	// kept first: it is the only evidence of what the disk did, and the
	// lost records may still be read out of it by hand.
	q, err := quarantine(s.path, data, timeNow())
	if err != nil {
		return fmt.Errorf("damaged at offset %d (%v) and a copy could not be kept, so it was left as it is: %w", damage[0].off, damage[0].why, err)
	}
	r.Quarantine = q
	if err := s.compact(); err != nil {
		return fmt.Errorf("damaged (a copy is in %s): %w", q, err)
	}
	return nil
}

// seekEnd positions the log for appends and rewrites it if it is mostly
// dead records.
func (s *Store) seekEnd() error {
	if _, err := s.f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	if s.wantCompaction() {
		if err := s.compact(); err != nil {
			return err
		}
	}
	return nil
}

// quarantine writes data, durably, to a new file next to path named
// path.corrupt-<time> and returns its name. It never replaces a file.
func quarantine(path string, data []byte, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s.%d", base, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncDir(filepath.Dir(name))
		}
		if err != nil {
			os.Remove(name)
			return "", fmt.Errorf("keeping a copy as %s: %w", name, err)
		}
		return name, nil
	}
}

// replay applies one record read back from the log.
func (s *Store) replay(r *record) {
	switch r.op {
	case opPut:
		s.put(r.lease, r.size)
	case opDel:
		s.del(r.network, r.ip)
	case opDrop:
		s.drop(r.network)
	}
}

// put, del and drop change the leases in memory; the caller holds s.mu
// for writing (or is Open, before anyone else can see s).
// size is that of l's record in the log.
func (s *Store) put(l Lease, size int64) {
	m := s.nets[l.Network]
	if m == nil {
		m = map[netip.Addr]entry{}
		s.nets[l.Network] = m
	}
	if old, ok := m[l.IP]; ok {
		s.live -= old.size
	}
	m[l.IP] = entry{lease: l, size: size}
	s.live += size
}

func (s *Store) del(network string, ip netip.Addr) {
	m := s.nets[network]
	if old, ok := m[ip]; ok {
		s.live -= old.size
		delete(m, ip)
		if len(m) == 0 {
			delete(s.nets, network)
		}
	}
}

func (s *Store) drop(network string) {
	for _, e := range s.nets[network] {
		s.live -= e.size
	}
	delete(s.nets, network)
}

// Close commits the writes already submitted, then closes the log and every
// Watch channel; later writes fail with ErrClosed.
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
	wasClosed := s.closed
	s.closed = true
	for _, ws := range s.watchers {
		for w := range ws {
			close(w.ch)
		}
	}
	s.watchers = map[string]map[*watcher]struct{}{}
	s.mu.Unlock()
	if wasClosed {
		return nil
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("closing lease store: %w", err)
	}
	return nil
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

// normalize validates l and returns it in canonical form: IPv4 unmapped,
// no zone, expiry in UTC.
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
	if l.Prefix < 0 || l.Prefix > 128 {
		return l, fmt.Errorf("lease %s: prefix length %d", l.IP, l.Prefix)
	}
	l.IP = ip
	if !l.Expiry.IsZero() {
		// As the log keeps it: what is read back equals what was put.
		l.Expiry = l.Expiry.UTC()
	}
	return l, nil
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
	s.submit(p)
}

func (s *Store) submit(p pending) {
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		p.done(ErrClosed)
		return
	}
	s.queue = append(s.queue, p)
	s.qmu.Unlock()
	s.signal()
}

// prepare validates c outside the commit, so that a bad lease fails alone.
func prepare(c Changes) (pending, error) {
	var p pending
	addNetwork := func(n string) {
		if !slices.Contains(p.networks, n) {
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
		p.dels = append(p.dels, Key{Network: k.Network, IP: k.IP.WithZone("").Unmap()})
		addNetwork(k.Network)
	}
	for _, l := range c.Put {
		l, err := normalize(l)
		if err != nil {
			return p, fmt.Errorf("storing lease: %w", err)
		}
		// The caller keeps its slice; the store keeps its own.
		l.MAC = bytes.Clone(l.MAC)
		p.puts = append(p.puts, l)
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

// commitLoop is the committer: it writes whatever is queued with one
// append, reports, and repeats; it returns once the queue is closed and
// drained.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	var batch []pending
	var lastSync time.Time
	busy := false
	for range s.wake {
		for {
			// Under load, let writes gather for a while after a sync:
			// an fdatasync costs the same CPU for one lease as for a
			// hundred, and back to back they took a tenth of the
			// server's CPU. A lone writer, or one after a quiet spell,
			// does not wait.
			if since := time.Since(lastSync); busy && since < minSyncGap {
				time.Sleep(minSyncGap - since)
			}
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
			lastSync, busy = time.Now(), len(batch) > 1
			// A planned write sees the leases as the writes before it
			// left them, so it goes alone, after them.
			for len(batch) > 0 {
				n := 1
				if batch[0].plan == nil {
					for n < len(batch) && batch[n].plan == nil {
						n++
					}
				}
				s.commit(batch[:n])
				clear(batch[:n]) // drop the done funcs and leases
				batch = batch[n:]
			}
			batch = batch[:0]
		}
	}
}

// commit appends batch to the log, makes it durable, and only then applies
// it to the leases readers see and reports it done.
func (s *Store) commit(batch []pending) {
	if p := &batch[0]; p.plan != nil {
		p.plan(s, p)
	}
	buf := s.buf[:0]
	for i := range batch {
		p := &batch[i]
		for _, n := range p.drops {
			var start int
			buf, start = beginFrame(buf)
			buf = endFrame(appendDrop(buf, n), start)
		}
		for _, k := range p.dels {
			var start int
			buf, start = beginFrame(buf)
			buf = endFrame(appendDel(buf, k.Network, k.IP), start)
		}
		p.sizes = p.sizes[:0]
		for j := range p.puts {
			before := len(buf)
			buf = framePut(buf, &p.puts[j])
			p.sizes = append(p.sizes, int64(len(buf)-before))
		}
	}
	var err error
	if len(buf) > 0 {
		err = s.append(buf)
		if s.commitHook != nil && err == nil {
			s.commitHook(len(batch))
		}
	}
	if cap(buf) <= 1<<20 {
		s.buf = buf[:0] // keep a usual buffer, not a huge one
	}
	if err != nil {
		err = fmt.Errorf("writing leases: %w", err)
		for i := range batch {
			batch[i].done(err)
		}
		return
	}
	changed := map[string][]*Changes{}
	s.mu.Lock()
	for i := range batch {
		p := &batch[i]
		for _, n := range p.drops {
			s.drop(n)
		}
		for _, k := range p.dels {
			s.del(k.Network, k.IP)
		}
		for j, l := range p.puts {
			s.put(l, p.sizes[j])
		}
		for _, n := range p.networks {
			changed[n] = append(changed[n], &p.changes)
		}
	}
	s.mu.Unlock()
	for n, cs := range changed {
		if batch[0].plan != nil {
			// Sweeps and DeleteNetwork concern every reader.
			s.notify(n)
			continue
		}
		s.notifyChanges(n, cs)
	}
	for i := range batch {
		batch[i].done(nil)
	}
	if s.wantCompaction() {
		// A failed rewrite leaves the log as it was; try again once it
		// has grown as much again.
		if s.compact() != nil {
			s.compactMin = 2 * s.size
		}
	}
}

// append writes b at the end of the log and makes it durable. On failure
// it cuts the log back to where it was, so that the failed records are
// never replayed; if even that fails, every later write fails too.
func (s *Store) append(b []byte) error {
	if s.broken != nil {
		return s.broken
	}
	_, err := s.f.Write(b)
	if err == nil {
		err = fdatasync(s.f)
	}
	if err == nil {
		s.size += int64(len(b))
		return nil
	}
	if terr := s.f.Truncate(s.size); terr != nil {
		s.broken = fmt.Errorf("lease log %s is damaged (a failed write could not be undone: %v), restart vnetd: %w", s.path, terr, err)
	} else if _, serr := s.f.Seek(s.size, io.SeekStart); serr != nil {
		s.broken = fmt.Errorf("lease log %s: %w", s.path, serr)
	}
	return err
}

// wantCompaction reports whether more than half of the log is dead records.
func (s *Store) wantCompaction() bool {
	return s.size > s.compactMin && s.size > 2*(s.live+int64(len(logMagic)))
}

// compact rewrites the log as the live leases alone: written to a new file,
// made durable, then renamed over the log, so that a crash leaves one or
// the other whole.
func (s *Store) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("rewriting the lease log: %w", err)
	}
	buf := append(make([]byte, 0, s.live+int64(len(logMagic))), logMagic...)
	for _, m := range s.nets {
		for _, e := range m {
			buf = framePut(buf, &e.lease)
		}
	}
	if _, err := f.Write(buf); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	// The new file must hold the lock before it becomes the log.
	if err := lockFile(f, 0); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		// The rename happened; the old log is gone either way.
		s.swap(f, int64(len(buf)))
		return err
	}
	s.swap(f, int64(len(buf)))
	return nil
}

func (s *Store) swap(f *os.File, size int64) {
	s.f.Close()
	s.f, s.size = f, size
	s.f.Seek(size, io.SeekStart)
}

// List returns every lease of network, expired ones included, sorted by
// address (IPv4 before IPv6).
func (s *Store) List(network string) ([]Lease, error) {
	if err := checkNetwork(network); err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	s.mu.RLock()
	m := s.nets[network]
	out := make([]Lease, 0, len(m))
	for _, e := range m {
		l := e.lease
		l.MAC = bytes.Clone(l.MAC) // the caller's to keep
		out = append(out, l)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// Sweep deletes the leases of every network that expired before now and
// returns how many it deleted, once that is durable.
func (s *Store) Sweep(now time.Time) (int, error) {
	var n int
	err := s.planned(func(s *Store, p *pending) {
		for network, m := range s.nets {
			for ip, e := range m {
				if e.lease.Expired(now) {
					p.dels = append(p.dels, Key{Network: network, IP: ip})
					if !slices.Contains(p.networks, network) {
						p.networks = append(p.networks, network)
					}
				}
			}
		}
		n = len(p.dels)
	})
	if err != nil {
		return 0, fmt.Errorf("sweeping expired leases: %w", err)
	}
	return n, nil
}

// DeleteNetwork removes every lease of network.
func (s *Store) DeleteNetwork(network string) error {
	if err := checkNetwork(network); err != nil {
		return fmt.Errorf("deleting leases: %w", err)
	}
	err := s.planned(func(s *Store, p *pending) {
		if len(s.nets[network]) > 0 {
			p.drops, p.networks = []string{network}, []string{network}
		}
	})
	if err != nil {
		return fmt.Errorf("deleting leases of %s: %w", network, err)
	}
	return nil
}

// planned commits the write plan decides at commit time and waits for it.
// It wakes every watcher of the networks it changes, filters or not.
func (s *Store) planned(plan func(s *Store, p *pending)) error {
	ch := make(chan error, 1)
	s.submit(pending{
		plan: plan,
		done: func(err error) { ch <- err },
	})
	return <-ch
}

// Networks returns the names of the networks that have leases, sorted.
func (s *Store) Networks() ([]string, error) {
	s.mu.RLock()
	out := slices.Collect(maps.Keys(s.nets))
	s.mu.RUnlock()
	slices.Sort(out)
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
