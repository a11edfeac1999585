package daemon

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify tells the service manager about vnetd (sd_notify, for
// Type=notify units); without NOTIFY_SOCKET it does nothing.
func sdNotify(log *slog.Logger, states ...string) {
	if _, err := sd.SdNotify(false, strings.Join(states, "\n")); err != nil {
		log.Warn("notifying systemd", "state", states, "err", err)
	}
}

// watchdog pings systemd's watchdog (WatchdogSec=) at half its interval
// while the Manager answers, until ctx ends; without WATCHDOG_USEC it
// returns at once. A Manager stuck with its lock held misses the pings and
// systemd restarts vnetd, which leaves the networks running.
func watchdog(ctx context.Context, m *Manager, log *slog.Logger) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog setting unusable", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.responsive(interval / 4) {
			sdNotify(log, sd.SdNotifyWatchdog)
		} else {
			log.Error("manager unresponsive: its lock has been held too long; not pinging the watchdog")
		}
	}
}

// responsive reports whether the Manager takes requests: its lock can be
// had within wait, or is held by an operation waiting for a hook, which the
// hook timeout bounds.
func (m *Manager) responsive(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		if m.mu.TryLock() {
			m.mu.Unlock()
			return true
		}
		if m.hooks.running.Load() > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reloadLoop re-reads the definitions for each value on reload (SIGHUP),
// telling systemd it is reloading meanwhile, until ctx ends.
func reloadLoop(ctx context.Context, reload <-chan os.Signal, m *Manager, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		}
		sdNotify(log, sd.SdNotifyReloading, strings.TrimSpace(sd.SdNotifyMonotonicUsec()))
		if err := m.Reload(); err != nil {
			log.Error("reload failed; the definitions are unchanged", "err", err)
		}
		sdNotify(log, sd.SdNotifyReady)
	}
}
