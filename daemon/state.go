package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Phase is where a network's start got to. A record is written before the
// first host change so that a crash mid-start can be rolled back on restart.
type Phase string

const (
	PhaseStarting Phase = "starting"
	PhaseRunning  Phase = "running"
)

// liveRecord is what vnetd remembers of a running network across restarts.
type liveRecord struct {
	Name      string    `json:"name"`
	Phase     Phase     `json:"phase"`
	XML       string    `json:"xml"` // the live definition (conf.Network formatted, live view)
	Transient bool      `json:"transient"`
	Bridge    string    `json:"bridge"`
	IfIndex   int       `json:"ifindex"`
	Started   time.Time `json:"started"`
}

// stateDB is the embedded store of live status (bbolt: transactional,
// fsynced, crash-safe).
type stateDB struct {
	db *bolt.DB
}

var (
	bucketNetworks = []byte("networks")
	bucketReap     = []byte("reap") // destroyed networks' bridges still to delete
)

// stateDamage says that vnetd.db was found damaged, moved aside, and
// replaced by an empty one.
type stateDamage struct {
	quarantine string // where the damaged file is now
	why        error
}

// openState opens (creating if needed) vnetd.db in dir. A database that is
// damaged (bbolt refuses it, panics or faults reading it, finds it
// inconsistent, or a record does not decode) would otherwise stop vnetd on
// every start, a crash loop under systemd; it is moved aside as
// vnetd.db.corrupt-<time> and replaced by an empty one, and the damage is
// returned so that the Manager rebuilds what it can (rebuildState).
// Errors that are not the file's (the lock held by another vnetd,
// permissions, I/O) are returned as before, leaving the file alone.
func openState(dir string) (*stateDB, *stateDamage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, "vnetd.db")
	db, damage, err := openChecked(path)
	if err != nil {
		return nil, nil, fmt.Errorf("state db %s: %w", path, err)
	}
	if damage == nil {
		return &stateDB{db: db}, nil, nil
	}
	q, err := moveAside(path, time.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("state db %s is damaged (%v) and could not be moved aside: %w", path, damage, err)
	}
	db, fresh, err := openChecked(path)
	if err == nil && fresh != nil {
		err = fresh
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state db %s: damaged, moved to %s, and a new one could not be made: %w", path, q, err)
	}
	return &stateDB{db: db}, &stateDamage{quarantine: q, why: damage}, nil
}

// openChecked opens the database at path and reads all of it. err is a
// failure that is not the file's fault; damage is what is wrong with its
// contents. bbolt keeps no checksums on its pages and trusts the page ids
// it finds, so a damaged page shows as a panic or a fault on the memory
// map; both are caught here, on this goroutine, where a later read would
// take vnetd down.
func openChecked(path string) (db *bolt.DB, damage, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			damage = fmt.Errorf("reading it panicked: %v", p)
			if db != nil {
				closeAbandoned(db)
			}
			db, err = nil, nil
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if notTheFiles(err) {
			return nil, nil, err
		}
		return nil, err, nil
	}
	if damage = checkState(db); damage == nil {
		damage = db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketNetworks, bucketReap} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if damage != nil && notTheFiles(damage) {
			db.Close()
			return nil, nil, damage
		}
	}
	if damage != nil {
		closeAbandoned(db)
		return nil, damage, nil
	}
	return db, nil, nil
}

// notTheFiles reports whether err is about the environment (the lock,
// permissions, the disk) rather than the database's contents.
func notTheFiles(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.Is(err, berrors.ErrTimeout) || errors.As(err, &pe) || errors.As(err, &errno)
}

// checkState reads every key and value of every bucket and decodes
// vnetd's records, which touches every page of the tree. bbolt's own
// tx.Check is not used: it runs on a goroutine of its own, where a panic
// on a damaged page (it asserts on page ids) cannot be caught. A free list
// damaged into naming pages in use is therefore not found here; bbolt
// would write over those pages, and the next start finds that damage.
func checkState(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return walkBucket(name, b)
		})
	})
}

// walkBucket reads all of b, and decodes the records of vnetd's buckets.
func walkBucket(name []byte, b *bolt.Bucket) error {
	var decode func() any
	switch string(name) {
	case string(bucketNetworks):
		decode = func() any { return &liveRecord{} }
	case string(bucketReap):
		decode = func() any { return &reapRecord{} }
	case string(bucketPorts):
		decode = func() any { return &portRecord{} }
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if child := b.Bucket(k); child != nil {
				return walkBucket(k, child)
			}
			return fmt.Errorf("bucket %q: entry %q is neither a value nor a bucket", name, k)
		}
		if decode != nil {
			if err := json.Unmarshal(v, decode()); err != nil {
				return fmt.Errorf("bucket %q: record %q: %w", name, k, err)
			}
		}
		return nil
	})
}

// closeAbandoned closes a database found damaged, bounded in time and
// panics: it is only given up.
func closeAbandoned(db *bolt.DB) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		db.Close()
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// moveAside renames path to path.corrupt-<time>, never over another file,
// durably, and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	for i := 0; i < 100; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s.%d", base, i)
		}
		// Link, not rename: it fails rather than replace an earlier copy.
		err := os.Link(path, name)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err == nil {
			err = os.Remove(path)
		} else if _, serr := os.Lstat(name); errors.Is(serr, fs.ErrNotExist) {
			// A file system without hard links.
			err = os.Rename(path, name)
		}
		if err != nil {
			return "", err
		}
		d, err := os.Open(filepath.Dir(path))
		if err != nil {
			return "", err
		}
		defer d.Close()
		return name, d.Sync()
	}
	return "", fmt.Errorf("%s.* all taken", base)
}

func (s *stateDB) close() error { return s.db.Close() }

func (s *stateDB) put(r *liveRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNetworks).Put([]byte(r.Name), data)
	})
}

func (s *stateDB) delete(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNetworks).Delete([]byte(name))
	})
}

func (s *stateDB) all() ([]*liveRecord, error) {
	var out []*liveRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNetworks).ForEach(func(k, v []byte) error {
			r := &liveRecord{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("state record %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, errors.Join(errors.New("reading live state"), err)
	}
	return out, nil
}

// reapRecord is a destroyed network's bridge that is still to be deleted.
type reapRecord struct {
	Bridge  string `json:"bridge"`
	IfIndex int    `json:"ifindex"`
	XML     string `json:"xml"`
}

// retire forgets a destroyed network and, when reap is set, records its
// bridge until it is deleted.
func (s *stateDB) retire(name string, reap *reapRecord) error {
	var data []byte
	if reap != nil {
		var err error
		if data, err = json.Marshal(reap); err != nil {
			return err
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketNetworks).Delete([]byte(name)); err != nil {
			return err
		}
		if reap == nil {
			return nil
		}
		return tx.Bucket(bucketReap).Put([]byte(reap.Bridge), data)
	})
}

func (s *stateDB) deleteReap(bridge string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReap).Delete([]byte(bridge))
	})
}

func (s *stateDB) reaps() (map[string]*reapRecord, error) {
	out := map[string]*reapRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReap).ForEach(func(k, v []byte) error {
			r := &reapRecord{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("reap record %q: %w", k, err)
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}
