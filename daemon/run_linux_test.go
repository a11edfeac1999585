package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
