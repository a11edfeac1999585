// Package tftpd is a small read-only TFTP server (RFC 1350, with the RFC
// 2347 option extension, the RFC 2348 blksize and the RFC 2349 tsize options) for
// network boot, serving the files under one root directory.
//
// Only octet mode is supported. Write requests are refused. A requested path
// must stay under the root: absolute paths, ".." components and symlinks
// leading out of the root are refused with an access violation.
package tftpd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vnetd/vnetd/internal/ratelog"
)

// Config configures a Server.
type Config struct {
	Root string         // directory served
	Addr netip.AddrPort // where to listen, e.g. the bridge IP and port 69
	// Bridge is the interface requests must arrive on: the server's
	// sockets are bound to it, so clients elsewhere that can route to Addr
	// are not served. Empty: any interface (tests on loopback).
	Bridge string
	// Base, if set, is a directory Root must be in or be (vnetd's
	// --tftp-root-base). Every request reaches the root through the base
	// with os.Root, so a symlink swapped into the root's path after New
	// cannot lead out of the base either.
	Base string
	Log  *slog.Logger // nil: no logging
}

// Defaults of the transfer parameters.
const (
	defaultTimeout      = time.Second
	defaultTries        = 5
	defaultMaxTransfers = 64
)

// Server is a read-only TFTP server.
type Server struct {
	root    string // absolute, symlink-free path of Config.Root
	base    string // absolute, symlink-free path of Config.Base, or ""
	rootRel string // root relative to base, when base is set
	addr    netip.AddrPort
	network string // "udp4" or "udp6"
	bridge  string // Config.Bridge
	log     *slog.Logger

	timeout time.Duration // wait for an ACK before resending
	tries   int           // sends of a packet before giving up
	sem     chan struct{} // bounds concurrent transfers

	// lim bounds the per-request log lines: any client can make them.
	lim   ratelog.Limiter
	stats counters
	// testPanic, set only by tests, is called with "read" on the reader
	// for each request and with "transfer" at the start of each
	// transfer, so that a test can make them panic.
	testPanic func(stage string, req *request)

	mu      sync.Mutex
	started bool
	closed  bool
	conn    *net.UDPConn
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Stats are a server's counters since it started.
type Stats struct {
	Requests uint64 // well-formed read and write requests read
	// Malformed requests were refused: not a valid request, or over the
	// size or option limits.
	Malformed uint64
	Busy      uint64 // requests refused as every transfer slot was taken
	// Panics are the requests whose handling panicked: on the reader (the
	// request was dropped) or in its transfer (the transfer ended).
	Panics uint64
}

type counters struct {
	requests, malformed, busy, panics atomic.Uint64
}

// Stats returns the server's counters; safe to call at any time.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:  s.stats.requests.Load(),
		Malformed: s.stats.malformed.Load(),
		Busy:      s.stats.busy.Load(),
		Panics:    s.stats.panics.Load(),
	}
}

// New checks cfg and returns a server; Start makes it listen.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("tftp: no root directory")
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("tftp root %s: %w", cfg.Root, err)
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("tftp root %s: %w", cfg.Root, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("tftp root %s: %w", cfg.Root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("tftp root %s: not a directory", cfg.Root)
	}
	var base, rootRel string
	if cfg.Base != "" {
		if base, err = filepath.Abs(cfg.Base); err == nil {
			base, err = filepath.EvalSymlinks(base)
		}
		if err != nil {
			return nil, fmt.Errorf("tftp root base %s: %w", cfg.Base, err)
		}
		rootRel, err = filepath.Rel(base, root)
		if err != nil || rootRel == ".." || strings.HasPrefix(rootRel, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("tftp root %s resolves to %s, outside the base %s", cfg.Root, root, cfg.Base)
		}
	}
	if !cfg.Addr.IsValid() {
		return nil, errors.New("tftp: no listen address")
	}
	addr := cfg.Addr
	network := "udp6"
	if a := addr.Addr().Unmap(); a.Is4() {
		addr = netip.AddrPortFrom(a, addr.Port())
		network = "udp4"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		root:    root,
		base:    base,
		rootRel: rootRel,
		addr:    addr,
		network: network,
		bridge:  cfg.Bridge,
		log:     log,
		timeout: defaultTimeout,
		tries:   defaultTries,
		sem:     make(chan struct{}, defaultMaxTransfers),
	}, nil
}

// Start listens on the configured address and serves requests in the
// background until ctx is cancelled or Close is called.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("tftp: server closed")
	}
	if s.started {
		return errors.New("tftp: server already started")
	}
	conn, err := s.listen(ctx, s.addr)
	if err != nil {
		return fmt.Errorf("tftp listen %s: %w", s.addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(ctx, func() { conn.Close() })
	s.started, s.conn, s.cancel = true, conn, cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serve(ctx, conn)
	}()
	s.log.Info("tftp server listening", "addr", s.localAddr(), "bridge", s.bridge, "root", s.root)
	return nil
}

// listen opens a UDP socket on addr, bound to the bridge if there is one.
func (s *Server) listen(ctx context.Context, addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: bindToDevice(s.bridge)}
	pc, err := lc.ListenPacket(ctx, s.network, addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Addr returns the address the server listens on (with the actual port
// when Config.Addr had port 0), or the zero value before Start.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localAddr()
}

func (s *Server) localAddr() netip.AddrPort {
	if s.conn == nil {
		return netip.AddrPort{}
	}
	ap := s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if s.network == "udp4" {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

// Close stops the server and every transfer, and waits for them to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) serve(ctx context.Context, conn *net.UDPConn) {
	buf := make([]byte, maxRequest+1) // one more: a longer datagram reads as too long
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.lim.Log(s.log, slog.LevelWarn, "tftp read", "err", err)
			continue
		}
		s.dispatch(ctx, conn, buf[:n], from)
	}
}

// dispatch starts the transfer that the packet pkt from a client asks for.
// A panic is the server's bug, not the client's doing: it costs the
// request, never the reader.
func (s *Server) dispatch(ctx context.Context, conn *net.UDPConn, pkt []byte, from netip.AddrPort) {
	defer s.recoverPanic("read", from)
	req, err := parseRequest(pkt)
	if err != nil {
		if len(pkt) >= 2 {
			if op := binary.BigEndian.Uint16(pkt); op == opRRQ || op == opWRQ {
				s.stats.malformed.Add(1)
				s.lim.Log(s.log, slog.LevelDebug, "tftp malformed request", "client", from, "err", err)
				conn.WriteToUDPAddrPort(errorPacket(errIllegalOp, "malformed request"), from)
			}
		}
		return // not a request: not for the listening port
	}
	s.stats.requests.Add(1)
	if s.testPanic != nil {
		s.testPanic("read", req)
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.stats.busy.Add(1)
		s.lim.Log(s.log, slog.LevelWarn, "tftp too many transfers, request refused", "client", from, "file", req.filename)
		conn.WriteToUDPAddrPort(errorPacket(errUndefined, "server busy"), from)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		defer s.recoverPanic("transfer", from)
		s.handle(ctx, req, from)
	}()
}

// recoverPanic, deferred, turns a panic while handling a client's request
// into a counted, rate-limited log line.
func (s *Server) recoverPanic(stage string, client netip.AddrPort) {
	r := recover()
	if r == nil {
		return
	}
	s.stats.panics.Add(1)
	s.lim.Log(s.log, slog.LevelError, "tftp request handling panicked", "stage", stage, "client", client, "panic", r)
}

// tftpError is an error to send to the client as an ERROR packet.
type tftpError struct {
	code   uint16
	msg    string // sent to the client
	reason string // logged
}

func (e *tftpError) Error() string { return e.msg + ": " + e.reason }

func accessDenied(reason string) *tftpError {
	return &tftpError{code: errAccess, msg: "access violation", reason: reason}
}

// handle serves one request on its own socket (the server's transfer ID).
func (s *Server) handle(ctx context.Context, req *request, client netip.AddrPort) {
	if s.network == "udp4" {
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	}
	if s.testPanic != nil {
		s.testPanic("transfer", req)
	}
	log := s.log.With("client", client, "file", req.filename)
	conn, err := s.listen(ctx, netip.AddrPortFrom(s.addr.Addr(), 0))
	if err != nil {
		s.lim.Log(log, slog.LevelError, "tftp transfer socket", "err", err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	t := &transfer{conn: conn, client: client, timeout: s.timeout, tries: s.tries}

	if req.op == opWRQ {
		s.lim.Log(log, slog.LevelWarn, "tftp write request refused")
		t.sendError(errAccess, "access violation: read-only server")
		return
	}
	if req.mode != "octet" {
		s.lim.Log(log, slog.LevelInfo, "tftp transfer mode refused", "mode", req.mode)
		t.sendError(errUndefined, "unsupported transfer mode "+req.mode+", only octet is supported")
		return
	}
	f, err := s.open(req.filename)
	if err != nil {
		var te *tftpError
		if !errors.As(err, &te) {
			te = &tftpError{code: errUndefined, msg: "cannot read file", reason: err.Error()}
		}
		if te.code == errAccess {
			s.lim.Log(log, slog.LevelWarn, "tftp access violation", "reason", te.reason)
		} else {
			s.lim.Log(log, slog.LevelInfo, "tftp request failed", "err", te.reason)
		}
		t.sendError(te.code, te.msg)
		return
	}
	defer f.Close()
	n, err := t.send(f, req.options)
	if err != nil {
		s.lim.Log(log, slog.LevelInfo, "tftp transfer failed", "err", err, "sent", n)
		return
	}
	s.lim.Log(log, slog.LevelInfo, "tftp sent", "bytes", n)
}

// open opens name, a client's path relative to the root, refusing any path
// that would leave the root.
func (s *Server) open(name string) (*os.File, error) {
	// DOS-style separators, as sent by some PXE clients (and dnsmasq).
	name = strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(name, "/") {
		return nil, accessDenied("absolute path")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return nil, accessDenied("path contains ..")
		}
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(s.root, filepath.FromSlash(name)))
	if err != nil {
		return nil, openError(err)
	}
	rel, err := filepath.Rel(s.root, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, accessDenied("resolves to " + resolved + ", outside the root")
	}
	// Open through os.Root as well, so that a symlink swapped in after the
	// check still cannot leave the root. O_NONBLOCK: a FIFO must not hang
	// the transfer; it is refused below.
	root, err := s.openRoot()
	if err != nil {
		return nil, fmt.Errorf("opening root: %w", err)
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, openError(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", resolved, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, accessDenied(resolved + " is not a regular file")
	}
	return f, nil
}

// openRoot opens the served directory, through the base when there is one:
// os.Root's OpenRoot never leaves the directory it is called on.
func (s *Server) openRoot() (*os.Root, error) {
	if s.base == "" {
		return os.OpenRoot(s.root)
	}
	b, err := os.OpenRoot(s.base)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.OpenRoot(s.rootRel)
}

func openError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return &tftpError{code: errNotFound, msg: "file not found", reason: err.Error()}
	}
	return accessDenied(err.Error())
}

// transfer is one transfer's connection state.
type transfer struct {
	conn    *net.UDPConn
	client  netip.AddrPort
	timeout time.Duration
	tries   int
}

var errPeerAborted = errors.New("client sent an error")

func (t *transfer) sendError(code uint16, msg string) {
	t.conn.WriteToUDPAddrPort(errorPacket(code, msg), t.client)
}

// send negotiates the options and sends f; it returns the bytes sent.
func (t *transfer) send(f *os.File, opts []option) (int64, error) {
	blksize := defaultBlksize
	var oack []option
	for _, o := range opts {
		switch o.name {
		case "blksize":
			n, err := strconv.Atoi(o.value)
			if err != nil || n < minBlksize {
				continue // ignored, and so not acknowledged
			}
			blksize = min(n, maxBlksize)
			oack = append(oack, option{"blksize", strconv.Itoa(blksize)})
		case "tsize":
			fi, err := f.Stat()
			if err != nil {
				t.sendError(errUndefined, "cannot read file")
				return 0, fmt.Errorf("stat: %w", err)
			}
			oack = append(oack, option{"tsize", strconv.FormatInt(fi.Size(), 10)})
		}
	}
	if len(oack) > 0 {
		if err := t.exchange(oackPacket(oack), 0); err != nil {
			return 0, fmt.Errorf("option negotiation: %w", err)
		}
	}
	buf := make([]byte, 4+blksize)
	var sent int64
	for block := uint16(1); ; block++ { // wraps to 0 after 65535, as most clients expect
		n, err := io.ReadFull(f, buf[4:])
		last := n < blksize
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.sendError(errUndefined, "read error")
			return sent, fmt.Errorf("reading: %w", err)
		}
		appendData(buf[:0], block)
		if err := t.exchange(buf[:4+n], block); err != nil {
			return sent, fmt.Errorf("block %d: %w", block, err)
		}
		sent += int64(n)
		if last {
			return sent, nil
		}
	}
}

// exchange sends pkt until the client acknowledges block, resending after
// each timeout. Duplicate ACKs of earlier blocks are ignored, not answered
// (the Sorcerer's Apprentice bug).
func (t *transfer) exchange(pkt []byte, block uint16) error {
	buf := make([]byte, 1024)
	for range t.tries {
		if _, err := t.conn.WriteToUDPAddrPort(pkt, t.client); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if err := t.conn.SetReadDeadline(time.Now().Add(t.timeout)); err != nil {
			return err
		}
		for {
			n, from, err := t.conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // resend
			}
			if err != nil {
				return err
			}
			if from.Addr().Unmap() != t.client.Addr().Unmap() || from.Port() != t.client.Port() {
				t.conn.WriteToUDPAddrPort(errorPacket(errUnknownTID, "unknown transfer ID"), from)
				continue
			}
			if n < 4 {
				continue
			}
			switch binary.BigEndian.Uint16(buf) {
			case opACK:
				if binary.BigEndian.Uint16(buf[2:]) == block {
					return nil
				}
			case opERROR:
				code := binary.BigEndian.Uint16(buf[2:])
				msg, _, _ := strings.Cut(string(buf[4:n]), "\x00")
				return fmt.Errorf("%w: code %d %q", errPeerAborted, code, msg)
			default:
				t.sendError(errIllegalOp, "illegal operation")
				return fmt.Errorf("unexpected opcode %d", binary.BigEndian.Uint16(buf))
			}
		}
	}
	return fmt.Errorf("no acknowledgement after %d tries", t.tries)
}
