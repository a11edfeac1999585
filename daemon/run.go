package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/net/netutil"
)

// Options are vnetd's command-line settings.
type Options struct {
	ConfigDir   string // persistent definitions
	StateDir    string // live state database
	RunDir      string // lock file
	Socket      string // control API socket
	SocketGroup string // group allowed on the socket (mode 0660); empty: root only (0600)
	OVSDBSocket string // Open vSwitch database, for networks with <virtualport type='openvswitch'>
	// SystemBus is the D-Bus address of firewalld and systemd-resolved
	// (tests); empty: the system bus, when the host has one.
	SystemBus string
	// ReconcileInterval is how often firewall rules are checked besides the
	// nftables events; 0 means 5 s.
	ReconcileInterval time.Duration
	// MetricsListen is a TCP address to serve /metrics on besides the
	// control socket; empty: none.
	MetricsListen string
	// TFTPRootBase is the directory every <tftp root> must be in (or be);
	// empty: any directory.
	TFTPRootBase string
	// Reload re-reads the definitions for each value received (SIGHUP);
	// nil: never.
	Reload <-chan os.Signal
	Log    *slog.Logger
}

// Run serves vnetd until ctx is cancelled. Running networks are adopted at
// start and left running at exit: only net-destroy takes a network down, and
// the kernel keeps bridging, routing and NATing while vnetd is away.
func Run(ctx context.Context, opt Options, host Host, fw Firewall) error {
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	if opt.TFTPRootBase != "" {
		// A base that is not there would refuse every TFTP network with a
		// puzzling error; say so at once instead.
		if fi, err := os.Stat(opt.TFTPRootBase); err != nil {
			return fmt.Errorf("--tftp-root-base: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("--tftp-root-base %s: not a directory", opt.TFTPRootBase)
		}
	}
	unlock, err := lockRunDir(opt.RunDir)
	if err != nil {
		return err
	}
	defer unlock()

	began := time.Now()
	services, err := newNetServices(opt.StateDir, log)
	if err != nil {
		return err
	}
	defer services.leases.Close()
	services.events = NewEventBus()
	services.tftpRootBase = opt.TFTPRootBase
	cfg := Config{ConfigDir: opt.ConfigDir, StateDir: opt.StateDir, Host: host, Firewall: fw, Log: log,
		Services: services, Leases: services.leases, Events: services.events, TFTPRootBase: opt.TFTPRootBase}
	if opt.OVSDBSocket != "" {
		cfg.OVS = &lazyOVS{socket: opt.OVSDBSocket}
	}
	shaper, closeShaper := openShaper(ctx, log)
	defer closeShaper()
	cfg.Shaper = shaper
	zones, dnsReg, closeBus := connectHostServices(opt.SystemBus, log)
	defer closeBus()
	cfg.Firewalld, cfg.Resolved = zones, dnsReg
	m, err := Open(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Autostart(); err != nil {
		log.Warn("some autostart networks did not start", "err", err)
	}
	// Starting hundreds of networks makes a heap several times what they
	// keep (netlink dumps, XML, servers' set-up); give it back now rather
	// than carrying it as resident memory for the daemon's lifetime.
	debug.FreeOSMemory()
	if opt.MetricsListen != "" {
		ln, err := net.Listen("tcp", opt.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listener (--metrics-listen %s): %w", opt.MetricsListen, err)
		}
		stopMetrics := serveMetrics(ln, m, log)
		defer stopMetrics()
	}

	ln, err := listenSocket(opt.Socket, opt.SocketGroup)
	if err != nil {
		return err
	}
	srv := controlLimits.server(Handler(m, log))
	// Event streams never end by themselves: closing the bus ends them.
	srv.RegisterOnShutdown(m.Events().Close)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("vnetd ready", "socket", opt.Socket, "startup", time.Since(began))
	sdNotify(log, sd.SdNotifyReady)
	loopsCtx, stopLoops := context.WithCancel(ctx)
	var loops sync.WaitGroup
	loops.Go(func() { watchdog(loopsCtx, m, log) })
	loops.Go(func() { reloadLoop(loopsCtx, opt.Reload, m, log) })

	interval := opt.ReconcileInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	reconcileDone := make(chan struct{})
	go func() {
		defer close(reconcileDone)
		reconcileLoop(ctx, m, fw, interval, log)
	}()

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("control API stopped", "err", err)
		}
	}
	sdNotify(log, sd.SdNotifyStopping)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	<-reconcileDone
	stopLoops()
	loops.Wait()
	os.Remove(opt.Socket)
	log.Info("vnetd stopped; networks left running")
	return nil
}

// watcher is implemented by firewalls that report ruleset changes as they
// happen (nftables netlink events).
type watcher interface {
	Watch(ctx context.Context, changed func()) error
}

// reconcileLoop restores firewall rules that someone flushed or edited: at
// once when the firewall reports a change, and every interval otherwise.
func reconcileLoop(ctx context.Context, m *Manager, fw Firewall, interval time.Duration, log *slog.Logger) {
	kick := make(chan struct{}, 1)
	if w, ok := fw.(watcher); ok {
		go func() {
			err := w.Watch(ctx, func() {
				select {
				case kick <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				log.Warn("nftables events unavailable; checking rules periodically only", "err", err)
			}
		}()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			m.sweepLeases()
			continue
		case <-t.C:
		case <-kick:
			// let a burst of events (our own batch included) settle
			time.Sleep(100 * time.Millisecond)
		}
		m.Reconcile()
	}
}

// lockRunDir takes the run dir's lock so only one vnetd manages a host.
func lockRunDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	path := filepath.Join(dir, "vnetd.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another vnetd is already running with run dir %s (lock %s is held)", dir, path)
		}
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}

// serverLimits bound what the clients of one HTTP listener can hold: the
// time a connection may take to send a request and to take its answer, the
// time it may sit idle between requests, and how many connections are
// served at once. Zero means no bound.
type serverLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
	maxConns                      int
}

// metricsLimits: --metrics-listen may be reachable by anyone, and a scrape
// is one small GET answered in milliseconds, so every phase is bounded.
// Past maxConns, new connections wait in the kernel's accept queue rather
// than being accepted and closed: waiting costs vnetd no goroutine and no
// file descriptor, and a scraper queued behind a stuck client is served
// as soon as the timeouts free a slot instead of failing at once.
var metricsLimits = serverLimits{
	readHeader:     10 * time.Second,
	read:           30 * time.Second,
	write:          30 * time.Second,
	idle:           30 * time.Second,
	maxHeaderBytes: 16 << 10,
	maxConns:       16,
}

// controlLimits: only root and --socket-group can reach the control socket,
// and they can do anything with vnetd anyway, so the bounds only keep a
// stuck or careless client from holding connections forever; there is no
// connection limit, which would let such a client lock the administrator
// out. There is no read or write timeout either: GET /v1/events streams for
// as long as its client listens, and /debug/pprof/profile and /trace for as
// long as asked. net/http keeps ReadTimeout armed while a handler runs and
// cancels the request's context when it fires, which would end both, and
// WriteTimeout cuts their responses. Request bodies are bounded in size by
// the handlers (maxBody).
var controlLimits = serverLimits{
	readHeader: 10 * time.Second,
	idle:       2 * time.Minute,
}

func (l serverLimits) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    l.maxHeaderBytes,
	}
}

func (l serverLimits) listener(ln net.Listener) net.Listener {
	if l.maxConns <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, l.maxConns)
}

// listenSocket opens the control socket at path: mode 0600, or 0660 and
// owned by group. listen(2) creates a socket with the umask's mode, so the
// socket is born in a private (0700) directory next to path and renamed into
// place only once its owner and mode are final: at no moment can anyone the
// umask would allow connect. The rename also replaces a stale socket
// atomically (the run dir's lock proves no other vnetd uses it).
func listenSocket(path, group string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	mode, gid := os.FileMode(0o600), -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, err
		}
		mode, gid = 0o660, g
	}
	// Short names: the birth path must fit a socket address (108 bytes)
	// about as well as path does.
	birthDir, err := os.MkdirTemp(dir, ".vnetd")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(birthDir)
	birth := filepath.Join(birthDir, "s")
	ln, err := net.Listen("unix", birth)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// The birth path is gone after the rename, and a later Close must not
	// unlink whatever might be there then; Run removes the socket at exit.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := placeSocket(birth, path, mode, gid); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func placeSocket(birth, path string, mode os.FileMode, gid int) error {
	if gid >= 0 {
		if err := os.Chown(birth, 0, gid); err != nil {
			return fmt.Errorf("control socket group: %w", err)
		}
	}
	if err := os.Chmod(birth, mode); err != nil {
		return fmt.Errorf("control socket mode: %w", err)
	}
	if err := os.Rename(birth, path); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("socket group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}
