package daemon

import (
	"fmt"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
)

// Reload re-reads the persistent definitions from the config dir (SIGHUP).
// Every file is checked first, as net-define checks a definition; if any
// fails, nothing changes and the error names each failing file and its
// problem. Otherwise the files become the persistent config, with libvirt's
// semantics: running networks keep their live definitions (as after
// net-define), a running network whose file is gone goes on as a transient
// one (as after net-undefine), and one that gained a file becomes
// persistent. Each network defined anew or differently gets a defined
// event, each one no longer defined an undefined event.
func (m *Manager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	running := make([]*conf.Network, 0, len(m.active))
	for _, r := range m.active {
		running = append(running, r.net)
	}
	set, problems := readDefinitions(m.store.store, checkContext{running: running, linkExists: m.cfg.Host.LinkExists})
	if problems != nil {
		return fail(api.CodeInvalidDefinition, "", fmt.Errorf("reload: kept the current definitions: %w", problems))
	}
	defined, undefined := m.store.diff(set)
	if err := m.store.install(set); err != nil {
		return fail(api.CodeOperationFailed, "", fmt.Errorf("reload: %w", err))
	}
	for _, name := range undefined {
		if r := m.active[name]; r != nil {
			m.setTransient(r, true)
		} else {
			m.forgetLeases(name)
		}
		m.emit(api.EventUndefined, name)
	}
	for _, name := range defined {
		if r := m.active[name]; r != nil && r.transient {
			m.setTransient(r, false)
		}
		m.emit(api.EventDefined, name)
	}
	m.log.Info("definitions reloaded", "defined", defined, "undefined", undefined)
	return nil
}

// setTransient records whether a running network has a persistent
// definition. A failure to record it only matters after a restart, when the
// network would come back with the old flag; it is logged.
func (m *Manager) setTransient(r *running, transient bool) {
	r.transient = transient
	if err := m.saveRunning(r); err != nil {
		m.log.Error("recording whether a running network is persistent", "network", r.net.Name, "err", err)
	}
}
