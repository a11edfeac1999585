package daemon

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNotifySocket is systemd's end of NOTIFY_SOCKET: a unixgram socket
// collecting the messages vnetd sends.
func fakeNotifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	})
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return msgs
}

func expectNotify(t *testing.T, msgs <-chan string, want string) string {
	t.Helper()
	select {
	case m := <-msgs:
		if !strings.HasPrefix(m, want) {
			t.Fatalf("systemd got %q, want %q", m, want)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("systemd never got %q", want)
	}
	return ""
}

func TestNotifyReady(t *testing.T) {
	msgs := fakeNotifySocket(t)
	sdNotify(slog.New(slog.DiscardHandler), "READY=1")
	expectNotify(t, msgs, "READY=1")

	t.Setenv("NOTIFY_SOCKET", "")
	sdNotify(slog.New(slog.DiscardHandler), "READY=1") // without systemd: nothing, no error
}

func TestWatchdogPingsOnlyWhileTheManagerAnswers(t *testing.T) {
	e := newEnv(t)
	msgs := fakeNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "200000") // pings every 100 ms
	t.Setenv("WATCHDOG_PID", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); watchdog(ctx, e.m, e.m.log) }()
	defer func() { cancel(); <-done }()

	expectNotify(t, msgs, "WATCHDOG=1")
	e.m.mu.Lock()
	// Drain what was sent before the lock was taken, then expect silence.
	time.Sleep(150 * time.Millisecond)
	for len(msgs) > 0 {
		<-msgs
	}
	select {
	case m := <-msgs:
		e.m.mu.Unlock()
		t.Fatalf("pinged %q while the Manager is wedged", m)
	case <-time.After(400 * time.Millisecond):
	}
	// A lock held for a running hook is legitimate.
	e.m.hooks.running.Add(1)
	expectNotify(t, msgs, "WATCHDOG=1")
	e.m.hooks.running.Add(-1)
	e.m.mu.Unlock()
	expectNotify(t, msgs, "WATCHDOG=1")
}

func TestReloadLoopTellsSystemd(t *testing.T) {
	e := newEnv(t)
	msgs := fakeNotifySocket(t)
	e.m.Define([]byte(natXML))
	sub := e.m.Events().Subscribe("")
	defer sub.Close()
	reload := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); reloadLoop(ctx, reload, e.m, e.m.log) }()
	defer func() { cancel(); <-done }()

	e.writeDef(t, "lab", isolatedXML)
	reload <- os.Interrupt
	if m := expectNotify(t, msgs, "RELOADING=1\nMONOTONIC_USEC="); strings.HasSuffix(m, "\n") {
		t.Errorf("notification %q ends in a newline", m)
	}
	expectNotify(t, msgs, "READY=1")
	if got := drain(sub); len(got) != 1 || got[0] != "defined lab" {
		t.Fatalf("events of the reload: %v", got)
	}
}
