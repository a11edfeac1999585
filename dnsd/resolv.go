package dnsd

import (
	"bufio"
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// resolvPoll is how often the host's resolv.conf is checked for changes
// (by a stat; it is only read when it changed). Only a forwarded query
// triggers the check, so an idle network costs nothing.
const resolvPoll = time.Second

// resolvConf follows the host's resolv.conf: its nameservers are the
// default upstreams of networks that forward and name none of their own.
type resolvConf struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	next    time.Time // no stat before then
	stamp   fileStamp
	loaded  bool
	servers []netip.AddrPort
}

type fileStamp struct {
	exists bool
	mod    time.Time
	size   int64
}

func newResolvConf(path string, log *slog.Logger) *resolvConf {
	if path == "" {
		path = "/etc/resolv.conf"
	}
	return &resolvConf{path: path, log: log}
}

// get returns the nameservers of resolv.conf as of now. A missing or
// unreadable file means no servers, not an error: the network still
// starts, and forwards as soon as the file appears.
func (r *resolvConf) get(now time.Time) []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.next) {
		return r.servers
	}
	r.next = now.Add(resolvPoll)
	var st fileStamp
	if fi, err := os.Stat(r.path); err == nil {
		st = fileStamp{exists: true, mod: fi.ModTime(), size: fi.Size()}
	}
	if r.loaded && st == r.stamp {
		return r.servers
	}
	r.stamp = st
	var servers []netip.AddrPort
	if st.exists {
		data, err := os.ReadFile(r.path)
		if err != nil {
			r.log.Warn("cannot read resolv.conf: no upstream servers", "path", r.path, "err", err)
		}
		servers = parseResolvConf(data)
	}
	if !r.loaded || !sameServers(servers, r.servers) {
		if len(servers) == 0 {
			r.log.Info("no upstream servers in resolv.conf", "path", r.path)
		} else {
			r.log.Info("upstream servers from resolv.conf", "path", r.path, "servers", servers)
		}
	}
	r.servers = servers
	r.loaded = true
	return servers
}

// parseResolvConf returns the nameserver addresses of a resolv.conf, in
// order, on port 53.
func parseResolvConf(data []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out
}

func sameServers(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
