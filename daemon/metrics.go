package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vnetd/vnetd/dhcpd"
	"github.com/vnetd/vnetd/dnsd"
	"github.com/vnetd/vnetd/radvd"
	"github.com/vnetd/vnetd/shaping"
	"github.com/vnetd/vnetd/tftpd"
)

// metrics is the daemon's Prometheus registry (docs/api.md, Metrics). It is
// vnetd's own, never the global default one: a program that embeds the
// daemon package keeps its registry to itself.
type metrics struct {
	registry    *prometheus.Registry
	handler     http.Handler
	apiRequests *prometheus.CounterVec
	apiErrors   *prometheus.CounterVec
}

func newMetrics(m *Manager) *metrics {
	reg := prometheus.NewRegistry()
	mt := &metrics{
		registry: reg,
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vnetd_api_requests_total",
			Help: "Control API requests, by route (method and path pattern) and HTTP status code.",
		}, []string{"method", "code"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vnetd_api_errors_total",
			Help: "Control API requests that failed, by route and API error code.",
		}, []string{"method", "error"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "vnetd_build_info",
		Help:        "Always 1; the labels say which vnetd runs.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
	})
	build.Set(1)
	reg.MustRegister(mt.apiRequests, mt.apiErrors, build, &collector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mt.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: promLog{m.log},
		// A network whose counters cannot be read must not hide the rest.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
	return mt
}

// MetricsHandler serves the Prometheus exposition of the daemon and its
// networks.
func (m *Manager) MetricsHandler() http.Handler { return m.metrics.handler }

// serveMetrics serves /metrics, and nothing else, on ln (--metrics-listen)
// until stop. The control API stays on the socket: this listener may be
// reachable by anyone, and the metrics only name networks.
func serveMetrics(ln net.Listener, m *Manager, log *slog.Logger) (stop func()) {
	addr := ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.MetricsHandler())
	srv := metricsLimits.server(mux)
	ln = metricsLimits.listener(ln)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("serving metrics", "addr", addr)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}
}

// buildVersion is the module version vnetd was built as, else its VCS
// revision.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

type promLog struct{ log *slog.Logger }

func (l promLog) Println(v ...any) { l.log.Warn("serving metrics", "err", fmt.Sprint(v...)) }

// serviceStats are the counters of one network's servers; nil for a server
// the network does not run.
type serviceStats struct {
	dhcp4 *dhcpd.Stats4
	dhcp6 *dhcpd.Stats6
	dns   *dnsd.Stats
	ra    *radvd.Stats
	tftp  *tftpd.Stats
}

// statsService is a Service whose servers report counters.
type statsService interface {
	Stats() serviceStats
}

// Stats reads the servers' counters. The Manager's lock keeps Detach from
// changing s meanwhile.
func (s *netService) Stats() serviceStats {
	var st serviceStats
	if s.dhcp4 != nil {
		v := s.dhcp4.Stats()
		st.dhcp4 = &v
	}
	if s.dhcp6 != nil {
		v := s.dhcp6.Stats()
		st.dhcp6 = &v
	}
	if s.dns != nil {
		v := s.dns.Stats()
		st.dns = &v
	}
	if s.ra != nil {
		v := s.ra.Stats()
		st.ra = &v
	}
	if s.tftp != nil {
		v := s.tftp.Stats()
		st.tftp = &v
	}
	return st
}

// netView is what a scrape reads of a running network, copied under the
// Manager's lock.
type netView struct {
	name       string
	managed    bool // has a bridge and firewall rules of vnetd's
	fwRestores uint64
	stats      serviceStats
	// shaped are the devices whose tc classes are reported: the bridge
	// when the network has <bandwidth>, and the ports' devices with rates.
	shaped []string
}

func (m *Manager) netViews() []netView {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]netView, 0, len(m.active))
	for name, r := range m.active {
		v := netView{name: name, managed: r.net.Forward.Mode.Managed(), fwRestores: r.fwRestores}
		if s, ok := r.service.(statsService); ok {
			v.stats = s.Stats()
		}
		if shapesNetwork(r.net) {
			v.shaped = append(v.shaped, r.net.Bridge.Name)
		}
		for _, lp := range r.ports {
			if dev, _ := shapedDevice(lp); dev != "" {
				v.shaped = append(v.shaped, dev)
			}
		}
		out = append(out, v)
	}
	return out
}

// tcStatsTimeout bounds the tc dumps of one scrape.
const tcStatsTimeout = 5 * time.Second

// collector turns the Manager's networks into metrics at each scrape. The
// servers keep plain atomic counters, so a packet costs no more than an
// add; the Prometheus types are made here, per scrape.
type collector struct{ m *Manager }

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descNetworksActive  = newDesc("vnetd_networks_active", "Networks running.")
	descNetworksDefined = newDesc("vnetd_networks_defined", "Networks with a persistent definition, running or not.")
	descFirewallRestore = newDesc("vnetd_firewall_restores_total",
		"Times a running network's firewall rules were found changed or missing and put back.", "network")

	descDHCPLeases = newDesc("vnetd_dhcp_leases_active", "DHCP leases that have not expired.", "network", "family")
	descDHCPPool   = newDesc("vnetd_dhcp_pool_size",
		"Addresses the DHCP server can lease: its ranges and the static hosts outside them.", "network", "family")
	descDHCPReceived = newDesc("vnetd_dhcp_received_total",
		"DHCP client messages handled, by message type.", "network", "family", "type")
	descDHCPReplies = newDesc("vnetd_dhcp_replies_total",
		"DHCP replies decided, by message type.", "network", "family", "type")
	descDHCPDropped = newDesc("vnetd_dhcp_dropped_total",
		"DHCP packets dropped unanswered: malformed (or, DHCPv4, not for this server), ignored (DHCPv6: for another server), overflow (every worker busy), panic (handling it panicked: a bug).",
		"network", "family", "reason")
	descDHCPExhausted = newDesc("vnetd_dhcp_pool_exhausted_total",
		"Clients left without an address because none was free.", "network", "family")
	descDHCPStoreErrors = newDesc("vnetd_dhcp_store_errors_total",
		"Lease store writes that failed; the reply was not sent.", "network", "family")
	descDHCPSendErrors = newDesc("vnetd_dhcp_send_errors_total", "DHCP replies that could not be sent.", "network", "family")

	descDNSQueries = newDesc("vnetd_dns_queries_total",
		"DNS questions asked, by query type (other: the types not counted on their own).", "network", "qtype")
	descDNSResponses    = newDesc("vnetd_dns_responses_total", "DNS answers sent, by response code.", "network", "rcode")
	descDNSCacheHits    = newDesc("vnetd_dns_cache_hits_total", "Forwarded names answered from the cache.", "network")
	descDNSCacheMisses  = newDesc("vnetd_dns_cache_misses_total", "Forwarded names not in the cache.", "network")
	descDNSCacheEntries = newDesc("vnetd_dns_cache_entries", "Answers in the cache.", "network")
	descDNSForwarded    = newDesc("vnetd_dns_forwarded_total",
		"Questions sent upstream (identical concurrent questions share one).", "network")
	descDNSUpstreamErrors = newDesc("vnetd_dns_upstream_errors_total",
		"Upstream exchanges that failed or timed out.", "network")
	descDNSUpstreamLatency = newDesc("vnetd_dns_upstream_latency_seconds",
		"Time upstream servers took to answer.", "network")
	descDNSDropped = newDesc("vnetd_dns_dropped_total",
		"DNS packets dropped unanswered: malformed (undecodable, not a query), overflow (too many queries waiting for upstreams), interface (UDP query that did not arrive on the bridge), panic (handling it panicked: a bug).",
		"network", "reason")
	descDNSRefused = newDesc("vnetd_dns_refused_clients_total",
		"Queries from clients outside the network, answered REFUSED.", "network")
	descDNSTCPConns    = newDesc("vnetd_dns_tcp_connections", "DNS TCP connections open.", "network")
	descDNSTCPRejected = newDesc("vnetd_dns_tcp_rejected_total",
		"DNS TCP connections closed as soon as accepted: global (the server's bound reached), per_client (the client's).",
		"network", "reason")

	descRASent = newDesc("vnetd_ra_sent_total",
		"Router advertisements sent: multicast (to all nodes) or unicast (answering one solicitation).", "network", "destination")
	descRASendErrors = newDesc("vnetd_ra_send_errors_total", "Router advertisements that could not be sent.", "network")
	descRSReceived   = newDesc("vnetd_ra_solicitations_received_total", "Router solicitations read.", "network")
	descRSAnswered   = newDesc("vnetd_ra_solicitations_answered_total", "Router solicitations an advertisement answered.", "network")
	descRSDropped    = newDesc("vnetd_ra_solicitations_dropped_total", "Router solicitations dropped: malformed or rate_limited.", "network", "reason")
	descTFTPRequests = newDesc("vnetd_tftp_requests_total", "Well-formed TFTP read and write requests read.", "network")
	descTFTPDropped  = newDesc("vnetd_tftp_dropped_total",
		"TFTP requests not served: malformed (invalid, or over the size or option limits), busy (every transfer slot taken), panic (handling it panicked).",
		"network", "reason")
	tcLabels         = []string{"network", "device", "direction", "class"}
	descTCBytes      = newDesc("vnetd_tc_class_bytes_total", "Bytes through a tc HTB class (link layer).", tcLabels...)
	descTCPackets    = newDesc("vnetd_tc_class_packets_total", "Packets through a tc HTB class.", tcLabels...)
	descTCDrops      = newDesc("vnetd_tc_class_drops_total", "Packets a tc HTB class dropped.", tcLabels...)
	descTCOverlimits = newDesc("vnetd_tc_class_overlimits_total", "Times a tc HTB class was throttled.", tcLabels...)
	descTCBacklog    = newDesc("vnetd_tc_class_backlog_bytes", "Bytes queued in a tc HTB class.", tcLabels...)
	descTCRate       = newDesc("vnetd_tc_class_rate_bytes_per_second", "Rate a tc HTB class is guaranteed.", tcLabels...)
	descTCCeil       = newDesc("vnetd_tc_class_ceil_bytes_per_second", "Rate a tc HTB class may borrow up to.", tcLabels...)
	collectorDescs   = []*prometheus.Desc{
		descNetworksActive, descNetworksDefined, descFirewallRestore,
		descDHCPLeases, descDHCPPool, descDHCPReceived, descDHCPReplies, descDHCPDropped, descDHCPExhausted,
		descDHCPStoreErrors, descDHCPSendErrors,
		descDNSQueries, descDNSResponses, descDNSCacheHits, descDNSCacheMisses, descDNSCacheEntries, descDNSForwarded,
		descDNSUpstreamErrors, descDNSUpstreamLatency, descDNSDropped, descDNSRefused, descDNSTCPConns, descDNSTCPRejected,
		descRASent, descRASendErrors, descRSReceived, descRSAnswered, descRSDropped,
		descTFTPRequests, descTFTPDropped,
		descTCBytes, descTCPackets, descTCDrops, descTCOverlimits, descTCBacklog, descTCRate, descTCCeil,
	}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectorDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	views := c.m.netViews()
	e := emitter{ch}
	e.gauge(descNetworksActive, float64(len(views)))
	if defs, err := c.m.store.List(); err != nil {
		ch <- prometheus.NewInvalidMetric(descNetworksDefined, err)
	} else {
		e.gauge(descNetworksDefined, float64(len(defs)))
	}
	for _, v := range views {
		if v.managed {
			e.counter(descFirewallRestore, v.fwRestores, v.name)
		}
		if st := v.stats.dhcp4; st != nil {
			e.dhcp4(v.name, st)
		}
		if st := v.stats.dhcp6; st != nil {
			e.dhcp6(v.name, st)
		}
		if st := v.stats.dns; st != nil {
			e.dns(v.name, st)
		}
		if st := v.stats.ra; st != nil {
			e.ra(v.name, st)
		}
		if st := v.stats.tftp; st != nil {
			e.tftp(v.name, st)
		}
	}
	c.collectTC(e, views)
}

// collectTC dumps the tc classes of the shaped devices, outside the
// Manager's lock: it is netlink I/O. A device that went away since is
// skipped.
func (c *collector) collectTC(e emitter, views []netView) {
	if c.m.cfg.Shaper == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.m.ctx, tcStatsTimeout)
	defer cancel()
	for _, v := range views {
		for _, dev := range v.shaped {
			classes, err := c.m.cfg.Shaper.Stats(ctx, dev)
			if err != nil {
				c.m.log.Debug("reading tc class counters", "network", v.name, "device", dev, "err", err)
				continue
			}
			for _, cl := range classes {
				e.tcClass(v.name, dev, cl)
			}
		}
	}
}

type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) counter(d *prometheus.Desc, v uint64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (e emitter) dhcp4(network string, st *dhcpd.Stats4) {
	const fam = "ipv4"
	e.gauge(descDHCPLeases, float64(st.Bound), network, fam)
	e.gauge(descDHCPPool, float64(st.PoolSize), network, fam)
	for _, m := range []struct {
		name string
		v    uint64
	}{{"discover", st.Discover}, {"request", st.Request}, {"decline", st.Decline}, {"release", st.Release}, {"inform", st.Inform}} {
		e.counter(descDHCPReceived, m.v, network, fam, m.name)
	}
	e.counter(descDHCPReplies, st.Offer, network, fam, "offer")
	e.counter(descDHCPReplies, st.Ack, network, fam, "ack")
	e.counter(descDHCPReplies, st.Nak, network, fam, "nak")
	e.counter(descDHCPDropped, st.Dropped-st.Overflow, network, fam, "malformed")
	e.counter(descDHCPDropped, st.Overflow, network, fam, "overflow")
	e.counter(descDHCPDropped, st.Panic, network, fam, "panic")
	e.counter(descDHCPExhausted, st.PoolExhausted, network, fam)
	e.counter(descDHCPStoreErrors, st.StoreErrors, network, fam)
	e.counter(descDHCPSendErrors, st.SendErrors, network, fam)
}

func (e emitter) dhcp6(network string, st *dhcpd.Stats6) {
	const fam = "ipv6"
	e.gauge(descDHCPLeases, float64(st.Bound), network, fam)
	e.gauge(descDHCPPool, float64(st.PoolSize), network, fam)
	for _, m := range []struct {
		name string
		v    uint64
	}{
		{"solicit", st.Solicits}, {"request", st.Requests}, {"renew", st.Renews}, {"rebind", st.Rebinds},
		{"confirm", st.Confirms}, {"release", st.Releases}, {"decline", st.Declines}, {"information-request", st.InfoRequests},
	} {
		e.counter(descDHCPReceived, m.v, network, fam, m.name)
	}
	e.counter(descDHCPReplies, st.Advertises, network, fam, "advertise")
	e.counter(descDHCPReplies, st.Replies, network, fam, "reply")
	e.counter(descDHCPDropped, st.Malformed, network, fam, "malformed")
	e.counter(descDHCPDropped, st.Ignored, network, fam, "ignored")
	e.counter(descDHCPDropped, st.Overflow, network, fam, "overflow")
	e.counter(descDHCPDropped, st.Panic, network, fam, "panic")
	e.counter(descDHCPExhausted, st.NoAddrsAvail, network, fam)
	e.counter(descDHCPStoreErrors, st.StoreErrors, network, fam)
	e.counter(descDHCPSendErrors, st.SendErrors, network, fam)
}

func (e emitter) dns(network string, st *dnsd.Stats) {
	for qtype, v := range st.Queries {
		e.counter(descDNSQueries, v, network, qtype)
	}
	for rcode, v := range st.Responses {
		e.counter(descDNSResponses, v, network, rcode)
	}
	e.counter(descDNSCacheHits, st.CacheHits, network)
	e.counter(descDNSCacheMisses, st.CacheMisses, network)
	e.gauge(descDNSCacheEntries, float64(st.CacheEntries), network)
	e.counter(descDNSForwarded, st.Forwarded, network)
	e.counter(descDNSUpstreamErrors, st.UpstreamErrors, network)
	e.counter(descDNSDropped, st.Malformed, network, "malformed")
	e.counter(descDNSDropped, st.Overflow, network, "overflow")
	e.counter(descDNSDropped, st.WrongInterface, network, "interface")
	e.counter(descDNSDropped, st.Panics, network, "panic")
	e.counter(descDNSRefused, st.Refused, network)
	e.gauge(descDNSTCPConns, float64(st.TCPConnections), network)
	e.counter(descDNSTCPRejected, st.TCPRejectedGlobal, network, "global")
	e.counter(descDNSTCPRejected, st.TCPRejectedPerClient, network, "per_client")
	// Prometheus buckets are cumulative; the count is their total, so that
	// it agrees with them even when an answer lands between two loads.
	buckets := make(map[float64]uint64, len(dnsd.UpstreamLatencyBounds))
	var n uint64
	for i, b := range dnsd.UpstreamLatencyBounds {
		n += st.UpstreamLatencyBuckets[i]
		buckets[b.Seconds()] = n
	}
	n += st.UpstreamLatencyBuckets[len(dnsd.UpstreamLatencyBounds)]
	e.ch <- prometheus.MustNewConstHistogram(descDNSUpstreamLatency, n, st.UpstreamLatency.Seconds(), buckets, network)
}

func (e emitter) ra(network string, st *radvd.Stats) {
	e.counter(descRASent, st.Multicast, network, "multicast")
	e.counter(descRASent, st.Sent-min(st.Multicast, st.Sent), network, "unicast")
	e.counter(descRASendErrors, st.SendErrors, network)
	e.counter(descRSReceived, st.Received, network)
	e.counter(descRSAnswered, st.Answered, network)
	e.counter(descRSDropped, st.Malformed, network, "malformed")
	e.counter(descRSDropped, st.RateLimited, network, "rate_limited")
}

func (e emitter) tftp(network string, st *tftpd.Stats) {
	e.counter(descTFTPRequests, st.Requests, network)
	e.counter(descTFTPDropped, st.Malformed, network, "malformed")
	e.counter(descTFTPDropped, st.Busy, network, "busy")
	e.counter(descTFTPDropped, st.Panics, network, "panic")
}

func (e emitter) tcClass(network, dev string, cl shaping.ClassStats) {
	// Outbound classes live on the device's IFB; the device named is the
	// one the XML gave rates to.
	dir := "inbound"
	if cl.Outbound {
		dir = "outbound"
	}
	labels := []string{network, dev, dir, cl.Class.String()}
	e.counter(descTCBytes, cl.Bytes, labels...)
	e.counter(descTCPackets, uint64(cl.Packets), labels...)
	e.counter(descTCDrops, uint64(cl.Drops), labels...)
	e.counter(descTCOverlimits, uint64(cl.Overlimits), labels...)
	e.gauge(descTCBacklog, float64(cl.Backlog), labels...)
	e.gauge(descTCRate, float64(cl.Rate), labels...)
	e.gauge(descTCCeil, float64(cl.Ceil), labels...)
}

// routeOf is the label of a request's route: the mux pattern it matched,
// not its path, so that the series stay few whatever the clients ask.
func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// observe counts one served API request.
func (mt *metrics) observe(r *http.Request, status int, apiError string) {
	route := routeOf(r)
	mt.apiRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	if apiError != "" {
		mt.apiErrors.WithLabelValues(route, apiError).Inc()
	}
}
