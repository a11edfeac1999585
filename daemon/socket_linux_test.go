package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// TestSocketRefusesOtherUsers: the control socket is root's (0600), or
// root's and one group's (0660 with --socket-group); anybody else cannot
// even connect. The client runs on a thread of its own whose credentials
// are changed with raw system calls, which (unlike syscall.Setuid) change
// that thread only.
func TestSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	// t.TempDir is 0700: nobody could not reach a socket in it at all.
	dir, err := os.MkdirTemp("", "vnetd-socket-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody, nogroup, apiGroup = 65534, 65534, 65533
	for _, tc := range []struct {
		name     string
		group    string // --socket-group
		uid, gid int
		allowed  bool
	}{
		{name: "root", uid: 0, gid: 0, allowed: true},
		{name: "nobody", uid: nobody, gid: nogroup},
		{name: "nobody in root's group", uid: nobody, gid: 0},
		{name: "group member", group: fmt.Sprint(apiGroup), uid: nobody, gid: apiGroup, allowed: true},
		{name: "not a group member", group: fmt.Sprint(apiGroup), uid: nobody, gid: nogroup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, "vnetd.sock")
			ln, err := listenSocket(sock, tc.group)
			if err != nil {
				t.Fatal(err)
			}
			srv := &httpTestServer{ln: ln}
			srv.serve(Handler(e.m, e.m.log))
			defer srv.close()
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]os.FileMode{false: 0o600, true: 0o660}[tc.group != ""]; fi.Mode().Perm() != want {
				t.Fatalf("socket mode %v, want %v", fi.Mode().Perm(), want)
			}
			status, err := getAs(tc.uid, tc.gid, sock, "/v1/networks?all=true")
			switch {
			case tc.allowed && (err != nil || status != http.StatusOK):
				t.Fatalf("uid %d gid %d: %d %v", tc.uid, tc.gid, status, err)
			case !tc.allowed && !errors.Is(err, syscall.EACCES):
				t.Fatalf("uid %d gid %d: got %d %v, want EACCES on connect", tc.uid, tc.gid, status, err)
			}
		})
	}
}

// getAs connects to the unix socket as uid/gid (no supplementary groups)
// and sends a GET for path; it returns the status or the connect error.
func getAs(uid, gid int, sock, path string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread never goes back to root: it ends with the goroutine.
		runtime.LockOSThread()
		fd, err := func() (int, error) {
			if _, _, errno := syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0); errno != 0 {
				return -1, fmt.Errorf("setgroups: %w", errno)
			}
			if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); errno != 0 {
				return -1, fmt.Errorf("setresgid: %w", errno)
			}
			if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); errno != 0 {
				return -1, fmt.Errorf("setresuid: %w", errno)
			}
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				return -1, err
			}
			if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
				syscall.Close(fd)
				return -1, err
			}
			return fd, nil
		}()
		done <- result{fd, err}
	}()
	r := <-done
	if r.err != nil {
		return 0, r.err
	}
	f := os.NewFile(uintptr(r.fd), "vnetd.sock")
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: vnetd\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
