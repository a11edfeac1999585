package leases

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ImportBolt moves the leases of a lease database written by an earlier
// vnetd (bbolt, JSON values in bucket "leases") into s, durably, then
// renames the database to path + ".imported" so that it is imported once.
// Records that cannot be read are skipped and counted; the database is kept
// under its new name for a look at them.
func (s *Store) ImportBolt(path string) (imported, skipped int, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, ReadOnly: true})
	if err != nil {
		return 0, 0, fmt.Errorf("lease database %s: %w", path, err)
	}
	var c Changes
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("leases"))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			l, err := decodeBoltRecord(v)
			if err != nil {
				skipped++
				return nil
			}
			if l, err = normalize(l); err != nil {
				skipped++
				return nil
			}
			c.Put = append(c.Put, l)
			return nil
		})
	})
	db.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("lease database %s: %w", path, err)
	}
	if len(c.Put) > 0 {
		ch := make(chan error, 1)
		s.Apply(c, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			return 0, skipped, err
		}
	}
	if err := os.Rename(path, path+".imported"); err != nil {
		return len(c.Put), skipped, fmt.Errorf("lease database %s imported, but: %w", path, err)
	}
	return len(c.Put), skipped, nil
}

// boltRecord is a lease as the bbolt database stored it.
type boltRecord struct {
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

func decodeBoltRecord(data []byte) (Lease, error) {
	var r boltRecord
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
	switch r.Kind {
	case "ipv4":
		l.Kind = V4
	case "ipv6":
		l.Kind = V6
	default:
		return Lease{}, errors.New("unknown lease kind")
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
