package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
	"golang.org/x/sys/unix"
)

// setLimits replaces a listener's limits for one test.
func setLimits(t *testing.T, l *serverLimits, v serverLimits) {
	t.Helper()
	old := *l
	*l = v
	t.Cleanup(func() { *l = old })
}

// A client of --metrics-listen can neither keep connections forever, idle
// or silent, nor hold more than maxConns of them: one more waits unserved
// until the timeouts free a slot.
func TestMetricsListenerBounded(t *testing.T) {
	e := newEnv(t)
	limits := metricsLimits
	limits.maxConns = 3
	limits.readHeader = 2 * time.Second
	limits.idle = 2 * time.Second
	setLimits(t, &metricsLimits, limits)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveMetrics(ln, e.m, e.m.log)
	defer stop()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const get = "GET /metrics HTTP/1.1\r\nHost: vnetd\r\n\r\n"
	scrape := func(c net.Conn, r *bufio.Reader) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, get); err != nil {
			return err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("scrape: %s", resp.Status)
		}
		return nil
	}

	// Every slot held: one connection that never says a word, the others
	// kept alive after a scrape.
	held := []net.Conn{dial()}
	for range limits.maxConns - 1 {
		c := dial()
		if err := scrape(c, bufio.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	began := time.Now()

	extra := dial()
	if _, err := io.WriteString(extra, get); err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := extra.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d of %d served while the others are held: read %d, %v", limits.maxConns+1, limits.maxConns, n, err)
	}

	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("held connection %d not closed by vnetd: read %d, %v", i, n, err)
		}
	}
	t.Logf("held connections closed %v after the last scrape", time.Since(began).Round(time.Millisecond))

	extra.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("queued connection not served once a slot was free: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("queued scrape: %s", resp.Status)
	}
}

// The control socket closes idle keep-alive connections, and an event
// stream outlives every one of its timeouts.
func TestControlSocketIdleTimeoutSparesEvents(t *testing.T) {
	e := newEnv(t)
	limits := controlLimits
	limits.readHeader = 300 * time.Millisecond
	limits.idle = 300 * time.Millisecond
	setLimits(t, &controlLimits, limits)
	sock := filepath.Join(e.dir, "vnetd.sock")
	ln, err := listenSocket(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := controlLimits.server(Handler(e.m, e.m.log))
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan api.Event, 1)
	go client.New(sock).Events(ctx, "", func(ev api.Event) bool {
		got <- ev
		return false
	})
	waitFor(t, func() bool { return e.m.Events().count.Load() == 1 })
	streamed := time.Now()

	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(idle, "GET /v1/networks HTTP/1.1\r\nHost: vnetd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(idle)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle keep-alive connection not closed: read %d, %v", n, err)
	}

	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Type != api.EventDefined {
			t.Errorf("event %+v, want defined", ev)
		}
		t.Logf("event stream alive %v after it began", time.Since(streamed).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("event stream ended by the control socket's timeouts")
	}
}

// The control socket never exists with a mode or owner other than its
// final one: it is born in a private directory and renamed into place, so
// no name other than a directory is ever created in the socket's
// directory, the socket's name appears once, by the rename, and its
// attributes never change after that.
func TestSocketBornPrivate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group string
		mode  os.FileMode
	}{
		{name: "root only", mode: 0o600},
		{name: "group", group: "65533", mode: 0o660},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.group != "" && os.Geteuid() != 0 {
				t.Skip("needs root to give the socket to a group")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "vnetd.sock")
			// A stale socket from a vnetd that died.
			stale, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			stale.(*net.UnixListener).SetUnlinkOnClose(false)
			stale.Close()

			fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
				t.Fatal(err)
			}
			ln, err := listenSocket(path, tc.group)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			placed := 0
			for _, ev := range readInotify(t, fd) {
				switch {
				case ev.mask&unix.IN_CREATE != 0 && ev.mask&unix.IN_ISDIR == 0:
					t.Errorf("%s created in the socket's directory: born where others may reach it", ev.name)
				case ev.name == "vnetd.sock" && ev.mask&unix.IN_MOVED_TO != 0:
					placed++
				case ev.name == "vnetd.sock" && ev.mask&unix.IN_ATTRIB != 0:
					t.Errorf("socket's owner or mode changed after it was in place")
				}
			}
			if placed != 1 {
				t.Errorf("socket renamed into place %d times, want 1", placed)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != tc.mode {
				t.Errorf("socket mode %v, want socket %v", fi.Mode(), tc.mode)
			}
			if gid := fi.Sys().(*syscall.Stat_t).Gid; tc.group != "" && fmt.Sprint(gid) != tc.group {
				t.Errorf("socket group %d, want %s", gid, tc.group)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				var names []string
				for _, en := range entries {
					names = append(names, en.Name())
				}
				t.Errorf("socket directory holds %s, want only vnetd.sock", strings.Join(names, ", "))
			}
			// It is the new socket that answers, not the stale one.
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Close()
				}
			}()
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("connect to the placed socket: %v", err)
			}
			c.Close()
		})
	}
}

type inotifyEvent struct {
	mask uint32
	name string
}

// readInotify returns the events queued on a non-blocking inotify fd.
func readInotify(t *testing.T, fd int) []inotifyEvent {
	t.Helper()
	var evs []inotifyEvent
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
			evs = append(evs, inotifyEvent{mask: raw.Mask, name: string(bytes.TrimRight(name, "\x00"))})
			off += unix.SizeofInotifyEvent + int(raw.Len)
		}
	}
}
