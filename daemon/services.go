package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dhcpd"
	"github.com/vnetd/vnetd/dnsd"
	"github.com/vnetd/vnetd/leases"
	"github.com/vnetd/vnetd/radvd"
	"github.com/vnetd/vnetd/tftpd"
)

// Services starts the servers a running network offers its guests: DHCP,
// TFTP, DNS and router advertisements. An interface so the orchestration is
// tested without sockets.
type Services interface {
	Start(ctx context.Context, n *conf.Network) (Service, error)
}

// Service is the set of servers of one network.
type Service interface {
	// Update applies a changed live definition without a restart.
	Update(n *conf.Network) error
	// Close stops the servers of a network that is stopping: the router
	// advertiser withdraws the default route it gave guests.
	Close() error
	// Detach stops the servers of a network that stays up while vnetd
	// exits: guests keep their routes until the next vnetd takes over.
	Detach() error
}

// netServices runs vnetd's own servers.
type netServices struct {
	log        *slog.Logger
	leases     *leases.Store
	serverDUID []byte
	// events gets the networks' lease events; nil: none.
	events *EventBus
	// tftpRootBase is --tftp-root-base: the TFTP servers reach their root
	// through it, so the bound holds after the start-time check too.
	tftpRootBase string
}

// newNetServices opens the lease store and the DHCPv6 server DUID in the
// state dir.
func newNetServices(stateDir string, log *slog.Logger) (*netServices, error) {
	store, err := leases.Open(filepath.Join(stateDir, "leases.log"))
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	if r := store.Repaired(); r != nil && r.MidFile() {
		// No crash does this; the disk (or someone writing to the file)
		// did, and the leases in the damaged records are gone.
		log.Error("lease log damaged: the damaged records were dropped, every intact lease kept, and the log rewritten",
			"damaged_stretches", r.Damaged, "records_lost", r.LostRecords, "bytes_lost", r.LostBytes,
			"torn_tail_bytes", r.TornBytes, "copy", r.Quarantine, "first", r.Detail)
	} else if r != nil {
		log.Warn("lease log repaired after a crash: cut a torn last append", "bytes", r.TornBytes, "what", r.Detail)
	}
	// Earlier versions kept the leases in a bbolt database.
	if old := filepath.Join(stateDir, "leases.db"); fileExists(old) {
		n, skipped, err := store.ImportBolt(old)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("importing the leases of %s: %w", old, err)
		}
		log.Info("leases imported from the bbolt database of an earlier vnetd", "file", old, "leases", n, "unreadable", skipped)
	}
	duid, err := serverDUID(filepath.Join(stateDir, "dhcp6-server-duid"))
	if err != nil {
		store.Close()
		return nil, err
	}
	return &netServices{log: log, leases: store, serverDUID: duid}, nil
}

// serverDUID is the DHCPv6 server's DUID, made once (DUID-UUID, RFC 6355)
// and kept, as clients remember which server leased them an address.
func serverDUID(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) == 18 {
		return b, nil
	}
	duid := make([]byte, 18)
	duid[1] = 4 // DUID-UUID
	if _, err := rand.Read(duid[2:]); err != nil {
		return nil, err
	}
	if err := conf.WriteFileAtomic(path, duid, 0o600); err != nil {
		return nil, fmt.Errorf("dhcpv6 server duid: %w", err)
	}
	return duid, nil
}

func (s *netServices) Start(ctx context.Context, n *conf.Network) (Service, error) {
	svc := &netService{}
	store, err := s.leaseStore(n)
	if err != nil {
		return nil, fmt.Errorf("network %q: reading its leases: %w", n.Name, err)
	}
	for i := range n.IPs {
		ip := &n.IPs[i]
		if !ip.HasDHCP() {
			continue
		}
		if ip.Address.Is4() && svc.dhcp4 == nil {
			srv, err := dhcpd.New4(dhcpd.Config4{Network: n, Bridge: n.Bridge.Name, Store: store, Log: s.log})
			if err == nil {
				err = srv.Start(ctx)
			}
			if err != nil {
				svc.Close()
				return nil, fmt.Errorf("network %q: dhcpv4: %w", n.Name, err)
			}
			svc.dhcp4 = srv
		}
		if ip.Address.Is6() && svc.dhcp6 == nil {
			srv, err := dhcpd.New6(dhcpd.Config6{Network: n, Bridge: n.Bridge.Name, ServerDUID: s.serverDUID, Store: store, Log: s.log})
			if err == nil {
				err = srv.Start(ctx)
			}
			if err != nil {
				svc.Close()
				return nil, fmt.Errorf("network %q: dhcpv6: %w", n.Name, err)
			}
			svc.dhcp6 = srv
		}
	}
	for i := range n.IPs {
		ip := &n.IPs[i]
		if ip.TFTPRoot == "" || svc.tftp != nil {
			continue
		}
		srv, err := tftpd.New(tftpd.Config{Root: ip.TFTPRoot, Base: s.tftpRootBase, Addr: netip.AddrPortFrom(ip.Address, 69), Bridge: n.Bridge.Name,
			Log: s.log.With("network", n.Name)})
		if err == nil {
			err = srv.Start(ctx)
		}
		if err != nil {
			svc.Close()
			return nil, fmt.Errorf("network %q: tftp on %s: %w", n.Name, ip.Address, err)
		}
		svc.tftp = srv
	}
	if n.DNS.Enabled() && len(n.IPs) > 0 {
		srv, err := dnsd.New(dnsd.Config{Network: n, Bridge: n.Bridge.Name, Leases: s.leases, Log: s.log})
		if err == nil {
			err = srv.Start(ctx)
		}
		if err != nil && !errors.Is(err, dnsd.ErrDisabled) {
			svc.Close()
			return nil, fmt.Errorf("network %q: dns: %w", n.Name, err)
		}
		if err == nil {
			svc.dns = srv
		}
	}
	if hasIPv6(n) {
		srv, err := radvd.New(radvd.Config{Network: n, Bridge: n.Bridge.Name, Log: s.log})
		if err == nil {
			err = srv.Start(ctx)
		}
		if err != nil {
			svc.Close()
			return nil, fmt.Errorf("network %q: router advertisements: %w", n.Name, err)
		}
		svc.ra = srv
	}
	return svc, nil
}

// leaseStore is the lease store as a network's DHCP servers write it: with
// lease events when there is an event bus.
func (s *netServices) leaseStore(n *conf.Network) (dhcpd.LeaseStore, error) {
	if s.events == nil || !slices.ContainsFunc(n.IPs, func(ip conf.IP) bool { return ip.HasDHCP() }) {
		return s.leases, nil
	}
	return newLeaseEvents(s.leases, n.Name, s.events)
}

func hasIPv6(n *conf.Network) bool {
	for i := range n.IPs {
		if n.IPs[i].Address.Is6() {
			return true
		}
	}
	return false
}

// netService is one network's servers.
type netService struct {
	dhcp4 *dhcpd.Server4
	dhcp6 *dhcpd.Server6
	tftp  *tftpd.Server
	ra    *radvd.Server
	dns   *dnsd.Server
}

func (s *netService) Update(n *conf.Network) error {
	var errs []error
	if s.dhcp4 != nil {
		errs = append(errs, s.dhcp4.Update(n))
	}
	if s.dhcp6 != nil {
		errs = append(errs, s.dhcp6.Update(n))
	}
	if s.ra != nil {
		errs = append(errs, s.ra.Update(n))
	}
	if s.dns != nil {
		errs = append(errs, s.dns.Update(n))
	}
	return errors.Join(errs...)
}

func (s *netService) Close() error {
	var errs []error
	if s.ra != nil {
		errs = append(errs, s.ra.Close())
	}
	if s.dhcp4 != nil {
		errs = append(errs, s.dhcp4.Close())
	}
	if s.dhcp6 != nil {
		errs = append(errs, s.dhcp6.Close())
	}
	if s.tftp != nil {
		errs = append(errs, s.tftp.Close())
	}
	if s.dns != nil {
		errs = append(errs, s.dns.Close())
	}
	return errors.Join(errs...)
}

func (s *netService) Detach() error {
	if s.ra != nil {
		if err := s.ra.Detach(); err != nil {
			return err
		}
		s.ra = nil
	}
	return s.Close()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
