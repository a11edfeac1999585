package tftpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	root    string
	outside string
	big     []byte
	srv     *Server
	logs    *syncBuffer
}

// newFixture builds a root directory and starts a server on it.
//
//	root/small.txt          "hello, tftp\n"
//	root/big.bin            1 MiB of random bytes (a multiple of 512)
//	root/sub/dir/nested     "nested"
//	root/inlink -> small.txt
//	root/outlink -> OUTSIDE/secret
//	root/outdir -> OUTSIDE
//	root/fifo               a named pipe
//
// tune, if given, adjusts the server before it starts.
func newFixture(t *testing.T, tune ...func(*Server)) *fixture {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	big := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(big)
	for _, d := range []string{root, outside, filepath.Join(root, "sub", "dir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string][]byte{
		filepath.Join(root, "small.txt"):      []byte("hello, tftp\n"),
		filepath.Join(root, "big.bin"):        big,
		filepath.Join(root, "sub/dir/nested"): []byte("nested"),
		filepath.Join(outside, "secret"):      []byte("secret"),
		filepath.Join(base, "x"):              []byte("x"),
	} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"inlink":  "small.txt",
		"outlink": filepath.Join(outside, "secret"),
		"outdir":  outside,
		"rel-out": "../outside/secret",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := New(Config{
		Root: root,
		Addr: netip.MustParseAddrPort("127.0.0.1:0"),
		Log:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.timeout = 200 * time.Millisecond
	// Most tests look for a server's log line after each request; the
	// limit itself is tested with its own interval.
	srv.lim.Every = time.Nanosecond
	for _, f := range tune {
		f(srv)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &fixture{root: root, outside: outside, big: big, srv: srv, logs: logs}
}

// tftpErr is an ERROR packet received by the client.
type tftpErr struct {
	code uint16
	msg  string
}

func (e *tftpErr) Error() string { return fmt.Sprintf("tftp error %d: %s", e.code, e.msg) }

// client is a minimal TFTP client.
type client struct {
	conn *net.UDPConn
}

func newClient(t *testing.T) *client {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{conn: conn}
}

func (c *client) read(timeout time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 70000)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	return buf[:n], from, err
}

func (c *client) ack(to netip.AddrPort, block uint16) error {
	b := binary.BigEndian.AppendUint16(nil, opACK)
	b = binary.BigEndian.AppendUint16(b, block)
	_, err := c.conn.WriteToUDPAddrPort(b, to)
	return err
}

func parseOptions(b []byte) (map[string]string, error) {
	fields, err := splitStrings(b)
	if err != nil || len(fields)%2 != 0 {
		return nil, fmt.Errorf("bad OACK %q", b)
	}
	m := map[string]string{}
	for i := 0; i < len(fields); i += 2 {
		m[fields[i]] = fields[i+1]
	}
	return m, nil
}

// get downloads name; opts are option name, value pairs. It returns the
// file and the options the server acknowledged.
func (c *client) get(srv netip.AddrPort, name, mode string, opts ...string) ([]byte, map[string]string, error) {
	if _, err := c.conn.WriteToUDPAddrPort(requestPacket(opRRQ, name, mode, opts...), srv); err != nil {
		return nil, nil, err
	}
	var (
		tid      netip.AddrPort
		data     []byte
		oack     map[string]string
		blksize  = defaultBlksize
		expected = uint16(1)
	)
	for {
		pkt, from, err := c.read(3 * time.Second)
		if err != nil {
			return nil, nil, err
		}
		if !tid.IsValid() {
			if from == srv && (len(pkt) < 2 || binary.BigEndian.Uint16(pkt) != opERROR) {
				// Only a "busy" error may come from the listening port.
				return nil, nil, fmt.Errorf("reply from the listening port")
			}
			tid = from
		} else if from != tid {
			continue
		}
		if len(pkt) < 4 {
			return nil, nil, fmt.Errorf("short packet %q", pkt)
		}
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			msg, _, _ := strings.Cut(string(pkt[4:]), "\x00")
			return nil, nil, &tftpErr{code: binary.BigEndian.Uint16(pkt[2:]), msg: msg}
		case opOACK:
			if oack, err = parseOptions(pkt[2:]); err != nil {
				return nil, nil, err
			}
			if v, ok := oack["blksize"]; ok {
				if blksize, err = strconv.Atoi(v); err != nil {
					return nil, nil, err
				}
			}
			if err := c.ack(tid, 0); err != nil {
				return nil, nil, err
			}
		case opDATA:
			block := binary.BigEndian.Uint16(pkt[2:])
			if block == expected-1 { // our ACK was lost
				c.ack(tid, block)
				continue
			}
			if block != expected {
				return nil, nil, fmt.Errorf("got block %d, want %d", block, expected)
			}
			payload := pkt[4:]
			if len(payload) > blksize {
				return nil, nil, fmt.Errorf("block %d has %d bytes, blksize %d", block, len(payload), blksize)
			}
			data = append(data, payload...)
			if err := c.ack(tid, block); err != nil {
				return nil, nil, err
			}
			if len(payload) < blksize {
				return data, oack, nil
			}
			expected++
		default:
			return nil, nil, fmt.Errorf("unexpected packet %q", pkt)
		}
	}
}

func TestDownload(t *testing.T) {
	fx := newFixture(t)
	c := newClient(t)
	for _, tc := range []struct {
		name     string
		file     string
		opts     []string
		want     []byte
		wantOACK map[string]string
	}{
		{name: "small", file: "small.txt", want: []byte("hello, tftp\n")},
		{name: "multi-block", file: "big.bin", want: fx.big},
		{
			name: "blksize 1428 tsize", file: "big.bin", opts: []string{"blksize", "1428", "tsize", "0"}, want: fx.big,
			wantOACK: map[string]string{"blksize": "1428", "tsize": "1048576"},
		},
		{
			name: "blksize capped", file: "small.txt", opts: []string{"BlkSize", "100000"}, want: []byte("hello, tftp\n"),
			wantOACK: map[string]string{"blksize": "65464"},
		},
		{name: "bad blksize ignored", file: "small.txt", opts: []string{"blksize", "7"}, want: []byte("hello, tftp\n")},
		{name: "unknown option ignored", file: "small.txt", opts: []string{"x-foo", "1"}, want: []byte("hello, tftp\n")},
		{name: "nested", file: "sub/dir/nested", want: []byte("nested")},
		{name: "dos separators", file: `sub\dir\nested`, want: []byte("nested")},
		{name: "dot components", file: "./sub/./dir//nested", want: []byte("nested")},
		{name: "symlink inside root", file: "inlink", want: []byte("hello, tftp\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, oack, err := c.get(fx.srv.Addr(), tc.file, "octet", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tc.want))
			}
			if fmt.Sprint(oack) != fmt.Sprint(tc.wantOACK) {
				t.Errorf("OACK %v, want %v", oack, tc.wantOACK)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	fx := newFixture(t)
	c := newClient(t)
	for _, tc := range []struct {
		name     string
		file     string
		mode     string
		code     uint16
		warnLogs bool
	}{
		{name: "dotdot", file: "../etc/passwd", code: errAccess, warnLogs: true},
		{name: "absolute", file: "/etc/passwd", code: errAccess, warnLogs: true},
		{name: "dos absolute", file: `\etc\passwd`, code: errAccess, warnLogs: true},
		{name: "dotdot inside", file: "a/../../x", code: errAccess, warnLogs: true},
		{name: "dotdot harmless", file: "sub/../small.txt", code: errAccess, warnLogs: true},
		{name: "dos dotdot", file: `..\outside\secret`, code: errAccess, warnLogs: true},
		{name: "symlink to outside file", file: "outlink", code: errAccess, warnLogs: true},
		{name: "relative symlink out", file: "rel-out", code: errAccess, warnLogs: true},
		{name: "through symlinked dir", file: "outdir/secret", code: errAccess, warnLogs: true},
		{name: "directory", file: "sub", code: errAccess, warnLogs: true},
		{name: "fifo", file: "fifo", code: errAccess, warnLogs: true},
		{name: "missing", file: "nosuch", code: errNotFound},
		{name: "missing in dir", file: "sub/nosuch", code: errNotFound},
		{name: "below a file", file: "small.txt/x", code: errNotFound},
		{name: "netascii", file: "small.txt", mode: "netascii", code: errUndefined},
		{name: "mail", file: "small.txt", mode: "mail", code: errUndefined},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = "octet"
			}
			before := strings.Count(fx.logs.String(), "level=WARN")
			_, _, err := c.get(fx.srv.Addr(), tc.file, mode)
			var te *tftpErr
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a TFTP error", err)
			}
			if te.code != tc.code {
				t.Errorf("error code %d (%s), want %d", te.code, te.msg, tc.code)
			}
			if te.code == errAccess && te.msg != "access violation" {
				t.Errorf("message %q", te.msg)
			}
			// The server logs after sending; give it a moment.
			deadline := time.Now().Add(time.Second)
			var warned bool
			for tc.warnLogs && !warned && time.Now().Before(deadline) {
				warned = strings.Count(fx.logs.String(), "level=WARN") > before
				if !warned {
					time.Sleep(5 * time.Millisecond)
				}
			}
			if tc.warnLogs && !warned {
				t.Errorf("no warning logged")
			}
		})
	}
	if strings.Contains(fx.logs.String(), "tftp sent") {
		t.Errorf("a refused file was sent:\n%s", fx.logs)
	}
}

func TestWriteRefused(t *testing.T) {
	fx := newFixture(t)
	c := newClient(t)
	if _, err := c.conn.WriteToUDPAddrPort(requestPacket(opWRQ, "upload", "octet"), fx.srv.Addr()); err != nil {
		t.Fatal(err)
	}
	pkt, from, err := c.read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if from == fx.srv.Addr() {
		t.Error("reply from the listening port, not a new transfer ID")
	}
	if len(pkt) < 4 || binary.BigEndian.Uint16(pkt) != opERROR || binary.BigEndian.Uint16(pkt[2:]) != errAccess {
		t.Errorf("reply %q, want ERROR code 2", pkt)
	}
	if _, err := os.Stat(filepath.Join(fx.root, "upload")); err == nil {
		t.Error("file created")
	}
}

func TestMalformedRequest(t *testing.T) {
	fx := newFixture(t)
	c := newClient(t)
	if _, err := c.conn.WriteToUDPAddrPort([]byte("\x00\x01noterminator"), fx.srv.Addr()); err != nil {
		t.Fatal(err)
	}
	pkt, _, err := c.read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) < 4 || binary.BigEndian.Uint16(pkt) != opERROR || binary.BigEndian.Uint16(pkt[2:]) != errIllegalOp {
		t.Errorf("reply %q, want ERROR code 4", pkt)
	}
	// Stray non-requests are ignored; the server keeps serving.
	c.conn.WriteToUDPAddrPort([]byte{0, 4, 0, 1}, fx.srv.Addr())
	if _, _, err := c.get(fx.srv.Addr(), "small.txt", "octet"); err != nil {
		t.Fatal(err)
	}
}

func TestRetransmitAndUnknownTID(t *testing.T) {
	fx := newFixture(t)
	c := newClient(t)
	if _, err := c.conn.WriteToUDPAddrPort(requestPacket(opRRQ, "big.bin", "octet"), fx.srv.Addr()); err != nil {
		t.Fatal(err)
	}
	first, tid, err := c.read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Withhold the ACK: block 1 comes again after the timeout.
	again, from, err := c.read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if from != tid || !bytes.Equal(first, again) {
		t.Fatalf("retransmission differs")
	}
	// A packet from another port gets an unknown-TID error.
	stranger := newClient(t)
	if err := stranger.ack(tid, 1); err != nil {
		t.Fatal(err)
	}
	pkt, _, err := stranger.read(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint16(pkt) != opERROR || binary.BigEndian.Uint16(pkt[2:]) != errUnknownTID {
		t.Errorf("stranger got %q, want ERROR code 5", pkt)
	}
	// The transfer goes on.
	if err := c.ack(tid, 1); err != nil {
		t.Fatal(err)
	}
	for {
		// Skip further retransmissions of block 1 already on their way.
		pkt, _, err = c.read(3 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint16(pkt) != opDATA || binary.BigEndian.Uint16(pkt[2:]) != 1 {
			break
		}
	}
	if binary.BigEndian.Uint16(pkt) != opDATA || binary.BigEndian.Uint16(pkt[2:]) != 2 {
		t.Errorf("got %q, want DATA block 2", pkt[:4])
	}
	// The client giving up ends the transfer.
	c.conn.WriteToUDPAddrPort(errorPacket(errUndefined, "bye"), tid)
}

func TestGivesUp(t *testing.T) {
	fx := newFixture(t, func(s *Server) { s.tries = 3 })
	c := newClient(t)
	start := time.Now()
	if _, err := c.conn.WriteToUDPAddrPort(requestPacket(opRRQ, "small.txt", "octet"), fx.srv.Addr()); err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		if _, _, err := c.read(500 * time.Millisecond); err != nil {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("got %d sends, want 3", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestBusy(t *testing.T) {
	fx := newFixture(t, func(s *Server) { s.sem = make(chan struct{}, 1) })
	c1, c2 := newClient(t), newClient(t)
	// c1 holds the only slot by never acknowledging.
	c1.conn.WriteToUDPAddrPort(requestPacket(opRRQ, "big.bin", "octet"), fx.srv.Addr())
	if _, _, err := c1.read(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	_, _, err := c2.get(fx.srv.Addr(), "small.txt", "octet")
	var te *tftpErr
	if !errors.As(err, &te) || te.msg != "server busy" {
		t.Fatalf("got %v, want server busy", err)
	}
}

func TestConcurrentDownloads(t *testing.T) {
	fx := newFixture(t)
	var wg sync.WaitGroup
	for range 8 {
		c := newClient(t)
		wg.Go(func() {
			got, _, err := c.get(fx.srv.Addr(), "big.bin", "octet", "blksize", "1428")
			if err != nil {
				t.Error(err)
			} else if !bytes.Equal(got, fx.big) {
				t.Error("content differs")
			}
		})
	}
	wg.Wait()
}

func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), max, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseStopsTransfers(t *testing.T) {
	before := runtime.NumGoroutine()
	// A stuck transfer would hold Close for long.
	fx := newFixture(t, func(s *Server) { s.timeout = 10 * time.Second })
	c := newClient(t)
	c.conn.WriteToUDPAddrPort(requestPacket(opRRQ, "big.bin", "octet"), fx.srv.Addr())
	if _, _, err := c.read(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := fx.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := fx.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := fx.srv.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	waitGoroutines(t, before)
}

func TestContextCancelStops(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	srv, err := New(Config{Root: dir, Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	addr := srv.Addr()
	cancel()
	// The port is released once the server stopped.
	deadline := time.Now().Add(3 * time.Second)
	for {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port still bound after cancel: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close()
	waitGoroutines(t, before)
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	addr := netip.MustParseAddrPort("127.0.0.1:0")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no root", Config{Addr: addr}},
		{"missing root", Config{Root: filepath.Join(dir, "nosuch"), Addr: addr}},
		{"root is a file", Config{Root: file, Addr: addr}},
		{"no addr", Config{Root: dir}},
		{"root outside the base", Config{Root: dir, Base: t.TempDir(), Addr: addr}},
		{"missing base", Config{Root: dir, Base: filepath.Join(dir, "nosuch"), Addr: addr}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPanicRecovered: a panic on the reader or in a transfer costs that
// request only; it is counted, and logged once per interval.
func TestPanicRecovered(t *testing.T) {
	fx := newFixture(t, func(s *Server) {
		s.lim.Every = time.Hour
		s.testPanic = func(stage string, req *request) {
			if req.filename == "panic-"+stage {
				panic("injected " + stage)
			}
		}
	})
	c := newClient(t)
	const n = 3
	for range n {
		for _, f := range []string{"panic-read", "panic-transfer"} {
			if _, err := c.conn.WriteToUDPAddrPort(requestPacket(opRRQ, f, "octet"), fx.srv.Addr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "the panics to be counted", func() bool { return fx.srv.Stats().Panics == 2*n })
	got, _, err := c.get(fx.srv.Addr(), "small.txt", "octet")
	if err != nil || string(got) != "hello, tftp\n" {
		t.Fatalf("after the panics: %q, %v", got, err)
	}
	if st := fx.srv.Stats(); st.Panics != 2*n || st.Requests != 2*n+1 {
		t.Errorf("stats %+v, want %d panics of %d requests", st, 2*n, 2*n+1)
	}
	if k := strings.Count(fx.logs.String(), "tftp request handling panicked"); k != 1 {
		t.Errorf("%d panic lines logged, want 1 (rate-limited):\n%s", k, fx.logs)
	}
}

// TestLogsRateLimited: a client flooding bad requests gets one log line
// per kind and interval, and every one is counted.
func TestLogsRateLimited(t *testing.T) {
	fx := newFixture(t, func(s *Server) { s.lim.Every = time.Hour })
	c := newClient(t)
	const n = 20
	for range n {
		c.conn.WriteToUDPAddrPort([]byte("\x00\x01noterminator"), fx.srv.Addr())
		if _, _, err := c.read(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.get(fx.srv.Addr(), "../etc/passwd", "octet"); err == nil {
			t.Fatal("../etc/passwd served")
		}
	}
	if st := fx.srv.Stats(); st.Malformed != n || st.Requests != n {
		t.Errorf("stats %+v, want %d malformed and %d requests", st, n, n)
	}
	waitFor(t, "the access violation to be logged", func() bool {
		return strings.Contains(fx.logs.String(), "tftp access violation")
	})
	for _, msg := range []string{"tftp malformed request", "tftp access violation"} {
		if k := strings.Count(fx.logs.String(), msg); k != 1 {
			t.Errorf("%q logged %d times for %d requests, want 1", msg, k, n)
		}
	}
}

// TestBaseHoldsAfterSwap: with a base (--tftp-root-base), a directory on the
// root's path swapped for a symlink out of the base after the server
// started does not lead requests out of it. open's resolve-and-compare
// already refuses a swap made before a request; reaching the root through
// the base also covers one racing between that check and the open, which
// a test cannot time.
func TestBaseHoldsAfterSwap(t *testing.T) {
	base, outside := t.TempDir(), t.TempDir()
	for path, data := range map[string]string{
		filepath.Join(base, "pxe", "root", "boot"): "boot file",
		filepath.Join(outside, "root", "boot"):     "secret",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(Config{Root: filepath.Join(base, "pxe", "root"), Base: base, Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	srv.timeout = 200 * time.Millisecond
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := newClient(t)
	if got, _, err := c.get(srv.Addr(), "boot", "octet"); err != nil || string(got) != "boot file" {
		t.Fatalf("before the swap: %q, %v", got, err)
	}
	if err := os.Rename(filepath.Join(base, "pxe"), filepath.Join(base, "pxe.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(base, "pxe")); err != nil {
		t.Fatal(err)
	}
	got, _, err := newClient(t).get(srv.Addr(), "boot", "octet")
	if err == nil || string(got) == "secret" {
		t.Fatalf("after the swap the server sent %q (err %v): it left the base", got, err)
	}
}
