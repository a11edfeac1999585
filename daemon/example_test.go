package daemon_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vnetd/vnetd/client"
	"github.com/vnetd/vnetd/daemon"
)

// libvirt's default network: NAT on virbr0 with DHCP and DNS.
const defaultNetwork = `<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>`

// A hypervisor image that embeds vnetd instead of running the daemon runs
// the whole of it in-process: Run serves the control API, starts the
// networks marked autostart, runs their DHCP, DNS and RA servers and keeps
// their firewall rules in place until ctx ends. The image's own code (or
// vnetctl) then manages networks over the socket with package client.
//
// It needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE) in the
// network namespace to manage, which is why this example is compiled but
// not run by go test.
func Example() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	host, fw, closeHost, err := daemon.NewHost(log)
	if err != nil {
		log.Error("this namespace cannot be managed", "err", err)
		return
	}
	defer closeHost()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	opt := daemon.Options{
		ConfigDir: "/etc/vnetd",
		StateDir:  "/var/lib/vnetd",
		RunDir:    "/run/vnetd",
		Socket:    "/run/vnetd/vnetd.sock",
		Log:       log,
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, opt, host, fw) }()

	// The control API answers once Run has adopted the networks left
	// running by a previous process and started the autostart ones.
	c := client.New(opt.Socket)
	for {
		if _, err := c.List(ctx, false); err == nil {
			break
		}
		select {
		case err := <-done:
			log.Error("vnetd did not start", "err", err)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := c.Info(ctx, "default"); err != nil {
		// First boot of the image: define the network and have it start
		// with every later boot by itself.
		if _, err := c.Define(ctx, []byte(defaultNetwork)); err != nil {
			log.Error("define", "err", err)
		} else if err := c.SetAutostart(ctx, "default", true); err != nil {
			log.Error("autostart", "err", err)
		} else if err := c.Start(ctx, "default"); err != nil {
			log.Error("start", "err", err)
		}
	}

	// Until SIGTERM: the network stays up after Run returns, as it does
	// when the daemon stops, and the next Run adopts it.
	if err := <-done; err != nil {
		log.Error("vnetd failed", "err", err)
	}
}

// ExampleOpen drives a Manager directly, without the control socket. With
// no Config.Services, no DHCP, DNS or RA server runs: this suits an image
// whose guests have static addresses; Run is the way to get the servers.
func ExampleOpen() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	host, fw, closeHost, err := daemon.NewHost(log)
	if err != nil {
		log.Error("this namespace cannot be managed", "err", err)
		return
	}
	defer closeHost()

	m, err := daemon.Open(daemon.Config{
		ConfigDir: "/etc/vnetd",
		StateDir:  "/var/lib/vnetd",
		Host:      host,
		Firewall:  fw,
		Log:       log,
	})
	if err != nil {
		log.Error("open", "err", err)
		return
	}
	// Close leaves running networks up; Destroy is what takes one down.
	defer m.Close()

	if _, err := m.Define([]byte(defaultNetwork)); err != nil {
		log.Error("define", "err", err) // names the element and why
		return
	}
	if err := m.Start("default"); err != nil {
		log.Error("start", "err", err)
		return
	}
	info, err := m.Info("default")
	if err != nil {
		log.Error("info", "err", err)
		return
	}
	log.Info("network up", "network", info.Name, "bridge", info.Bridge)
}
