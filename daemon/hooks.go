package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
)

// The network hook's operations, libvirt's names (virHookNetworkOpType).
const (
	hookStart       = "start"   // before anything is made on the host; failing aborts the start
	hookStarted     = "started" // everything is up; failing rolls the start back
	hookStopped     = "stopped" // after net-destroy; the result is ignored
	hookPortCreated = "port-created"
	hookPortDeleted = "port-deleted" // the result is ignored
	hookUpdated     = "updated"      // after a live net-update; the result is logged
)

// hookTimeout bounds one run of the hook: it runs with the Manager's lock
// held, so a hung script must not hang every network operation. libvirt
// waits forever.
const hookTimeout = 30 * time.Second

// hookStderrMax bounds how much of a failing hook's stderr goes into the
// error returned to the client.
const hookStderrMax = 4096

// hookPath is CONFIG_DIR/hooks/network, the counterpart of
// /etc/libvirt/hooks/network.
func hookPath(configDir string) string {
	return filepath.Join(configDir, "hooks", "network")
}

// hookArgs is the hook's command line after its name, as libvirt passes it:
// NETWORK OP SUBOP EXTRA. libvirt's sub-operation is "end" for stopped and
// "begin" for everything else; there is never an extra argument.
func hookArgs(network, op string) []string {
	sub := "begin"
	if op == hookStopped {
		sub = "end"
	}
	return []string{network, op, sub, "-"}
}

// hookInput is the hook's stdin, the document libvirt's networkRunHook
// writes: the live network XML and, for port operations, the port's, inside
// <hookData>, indented by two spaces and with no newline after the end tag.
func hookInput(n *conf.Network, p *conf.Port) []byte {
	var b bytes.Buffer
	b.WriteString("<hookData>\n")
	indentLines(&b, n.Format(0))
	if p != nil {
		indentLines(&b, p.Format())
	}
	b.WriteString("</hookData>")
	return b.Bytes()
}

func indentLines(b *bytes.Buffer, doc []byte) {
	for _, line := range strings.SplitAfter(string(doc), "\n") {
		if line == "" {
			continue
		}
		b.WriteString("  ")
		b.WriteString(line)
	}
}

// hookEnv is the hook's whole environment: what libvirt passes its hooks
// (virCommandAddEnvPassCommon), nothing else of vnetd's, so a hook sees
// neither NOTIFY_SOCKET nor anything a service manager set for vnetd.
func hookEnv(getenv func(string) string) []string {
	env := []string{"LC_ALL=C"}
	path := getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env = append(env, "PATH="+path)
	for _, name := range []string{"HOME", "USER", "LOGNAME", "TMPDIR"} {
		if v := getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// hookState is what the watchdog needs to know of hooks: one running holds
// the Manager's lock legitimately, up to hookTimeout.
type hookState struct {
	running atomic.Int32
}

// hookRunner runs one hook file.
type hookRunner struct {
	path    string
	timeout time.Duration
	env     []string
}

// present reports whether there is a hook to run: as in libvirt, a missing
// or non-executable file means no hooks. Unlike libvirt, a hook installed
// while vnetd runs is used from the next operation on.
func (h hookRunner) present() bool {
	fi, err := os.Stat(h.path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// run runs the hook with args and stdin. A non-zero exit, a hook killed at
// the timeout or one that cannot be executed is an error carrying the start
// of the hook's stderr.
func (h hookRunner) run(args []string, stdin []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.path, args...)
	cmd.Env = h.env
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(stdin)
	stderr := &headBuffer{max: hookStderrMax}
	cmd.Stderr = stderr
	// The hook and whatever it starts form a process group that the
	// timeout kills whole; WaitDelay stops a child that keeps stderr open
	// from holding us after that.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %v", h.timeout)
	}
	if msg := stderr.String(); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	buf       []byte
	max       int
	truncated bool
}

func (b *headBuffer) Write(p []byte) (int, error) {
	room := min(b.max-len(b.buf), len(p))
	b.buf = append(b.buf, p[:room]...)
	if room < len(p) {
		b.truncated = true
	}
	return len(p), nil
}

func (b *headBuffer) String() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b.buf), "?"))
	if b.truncated {
		s += " [...]"
	}
	return s
}

// hook runs the network hook for op on n (and port p, for port operations);
// without a hook file it does nothing. The error names the hook and its
// arguments.
func (m *Manager) hook(n *conf.Network, op string, p *conf.Port) error {
	h := hookRunner{path: hookPath(m.cfg.ConfigDir), timeout: hookTimeout, env: hookEnv(os.Getenv)}
	if !h.present() {
		return nil
	}
	args := hookArgs(n.Name, op)
	began := time.Now()
	m.hooks.running.Add(1)
	err := h.run(args, hookInput(n, p))
	m.hooks.running.Add(-1)
	m.log.Debug("network hook ran", "network", n.Name, "op", op, "took", time.Since(began), "err", err)
	if err != nil {
		return fmt.Errorf("network %q: hook %s %s: %w", n.Name, h.path, strings.Join(args, " "), err)
	}
	return nil
}

// hookNotify runs a hook whose failure changes nothing (stopped,
// port-deleted, updated): the operation is done already. The failure is
// logged.
func (m *Manager) hookNotify(n *conf.Network, op string, p *conf.Port) {
	if err := m.hook(n, op, p); err != nil {
		m.log.Error("network hook failed", "network", n.Name, "op", op, "err", err)
	}
}

// startedThenSave runs the started hook on a network that is up, then
// records it as running. libvirt also fails the start when the started hook
// fails; unlike libvirt, vnetd then takes the network down again.
func (m *Manager) startedThenSave(r *running) error {
	if err := m.hook(r.net, hookStarted, nil); err != nil {
		return fail(api.CodeOperationFailed, r.net.Name, err)
	}
	return m.saveRunning(r)
}
