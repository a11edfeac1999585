package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
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

func openState(dir string) (*stateDB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, "vnetd.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("state db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNetworks, bucketReap} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state db %s: %w", path, err)
	}
	return &stateDB{db: db}, nil
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
