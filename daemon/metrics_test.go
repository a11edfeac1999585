package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dhcpd"
	"github.com/vnetd/vnetd/dnsd"
	"github.com/vnetd/vnetd/radvd"
	"github.com/vnetd/vnetd/shaping"
	"github.com/vnetd/vnetd/tftpd"
)

// cannedServices starts services that report fixed counters.
type cannedServices struct {
	stats serviceStats
}

func (s *cannedServices) Start(context.Context, *conf.Network) (Service, error) {
	return &cannedService{stats: s.stats}, nil
}

type cannedService struct{ stats serviceStats }

func (s *cannedService) Update(*conf.Network) error { return nil }
func (s *cannedService) Close() error               { return nil }
func (s *cannedService) Detach() error              { return nil }
func (s *cannedService) Stats() serviceStats        { return s.stats }

// statsShaper is fakeShaper with tc class counters.
type statsShaper struct {
	*fakeShaper
	classes map[string][]shaping.ClassStats // by device
}

func (s *statsShaper) Stats(_ context.Context, dev string) ([]shaping.ClassStats, error) {
	return s.classes[dev], nil
}

func metricsEnv(t *testing.T, svcs Services, shaper Shaper) *testEnv {
	t.Helper()
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"),
		Host: e.host, Firewall: e.fw, Services: svcs, Shaper: shaper})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	t.Cleanup(func() { m.Close() })
	return e
}

var cannedStats = serviceStats{
	dhcp4: &dhcpd.Stats4{Discover: 10, Offer: 9, Request: 8, Ack: 7, Nak: 1, Decline: 1, Release: 2, Inform: 3,
		Dropped: 5, Overflow: 2, PoolExhausted: 1, StoreErrors: 1, SendErrors: 0, Panic: 4, Bound: 6, PoolSize: 253},
	dhcp6: &dhcpd.Stats6{Received: 30, Malformed: 1, Ignored: 2, Overflow: 3, Solicits: 4, Requests: 4, Renews: 5,
		Rebinds: 1, Confirms: 1, Releases: 1, Declines: 0, InfoRequests: 2, Advertises: 4, Replies: 13,
		NoAddrsAvail: 1, StoreErrors: 0, SendErrors: 1, Panic: 5, Bound: 3, PoolSize: 240},
	dns: &dnsd.Stats{
		Queries:   map[string]uint64{"A": 20, "AAAA": 10, "other": 1},
		Responses: map[string]uint64{"NOERROR": 25, "NXDOMAIN": 5, "REFUSED": 1},
		CacheHits: 12, CacheMisses: 4, CacheEntries: 4, Forwarded: 4, UpstreamErrors: 1, Malformed: 2, Overflow: 0,
		Refused: 1, UpstreamLatency: 1500 * time.Millisecond, UpstreamAnswers: 4,
		WrongInterface: 6, Panics: 1, TCPConnections: 3, TCPRejectedGlobal: 2, TCPRejectedPerClient: 5,
		// 1 at ≤1ms, 2 at ≤10ms, 1 over 5s
		UpstreamLatencyBuckets: [len(dnsd.UpstreamLatencyBounds) + 1]uint64{0: 1, 3: 2, len(dnsd.UpstreamLatencyBounds): 1},
	},
	ra:   &radvd.Stats{Sent: 7, Multicast: 5, SendErrors: 1, Received: 3, Answered: 3, Malformed: 1, RateLimited: 2},
	tftp: &tftpd.Stats{Requests: 9, Malformed: 4, Busy: 2, Panics: 1},
}

// The expected exposition of the shaped network below, flushed once.
const wantMetrics = `
# HELP vnetd_dhcp_dropped_total DHCP packets dropped unanswered: malformed (or, DHCPv4, not for this server), ignored (DHCPv6: for another server), overflow (every worker busy), panic (handling it panicked: a bug).
# TYPE vnetd_dhcp_dropped_total counter
vnetd_dhcp_dropped_total{family="ipv4",network="shaped",reason="malformed"} 3
vnetd_dhcp_dropped_total{family="ipv4",network="shaped",reason="overflow"} 2
vnetd_dhcp_dropped_total{family="ipv4",network="shaped",reason="panic"} 4
vnetd_dhcp_dropped_total{family="ipv6",network="shaped",reason="ignored"} 2
vnetd_dhcp_dropped_total{family="ipv6",network="shaped",reason="malformed"} 1
vnetd_dhcp_dropped_total{family="ipv6",network="shaped",reason="overflow"} 3
vnetd_dhcp_dropped_total{family="ipv6",network="shaped",reason="panic"} 5
# HELP vnetd_dhcp_leases_active DHCP leases that have not expired.
# TYPE vnetd_dhcp_leases_active gauge
vnetd_dhcp_leases_active{family="ipv4",network="shaped"} 6
vnetd_dhcp_leases_active{family="ipv6",network="shaped"} 3
# HELP vnetd_dhcp_pool_exhausted_total Clients left without an address because none was free.
# TYPE vnetd_dhcp_pool_exhausted_total counter
vnetd_dhcp_pool_exhausted_total{family="ipv4",network="shaped"} 1
vnetd_dhcp_pool_exhausted_total{family="ipv6",network="shaped"} 1
# HELP vnetd_dhcp_pool_size Addresses the DHCP server can lease: its ranges and the static hosts outside them.
# TYPE vnetd_dhcp_pool_size gauge
vnetd_dhcp_pool_size{family="ipv4",network="shaped"} 253
vnetd_dhcp_pool_size{family="ipv6",network="shaped"} 240
# HELP vnetd_dhcp_received_total DHCP client messages handled, by message type.
# TYPE vnetd_dhcp_received_total counter
vnetd_dhcp_received_total{family="ipv4",network="shaped",type="decline"} 1
vnetd_dhcp_received_total{family="ipv4",network="shaped",type="discover"} 10
vnetd_dhcp_received_total{family="ipv4",network="shaped",type="inform"} 3
vnetd_dhcp_received_total{family="ipv4",network="shaped",type="release"} 2
vnetd_dhcp_received_total{family="ipv4",network="shaped",type="request"} 8
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="confirm"} 1
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="decline"} 0
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="information-request"} 2
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="rebind"} 1
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="release"} 1
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="renew"} 5
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="request"} 4
vnetd_dhcp_received_total{family="ipv6",network="shaped",type="solicit"} 4
# HELP vnetd_dhcp_replies_total DHCP replies decided, by message type.
# TYPE vnetd_dhcp_replies_total counter
vnetd_dhcp_replies_total{family="ipv4",network="shaped",type="ack"} 7
vnetd_dhcp_replies_total{family="ipv4",network="shaped",type="nak"} 1
vnetd_dhcp_replies_total{family="ipv4",network="shaped",type="offer"} 9
vnetd_dhcp_replies_total{family="ipv6",network="shaped",type="advertise"} 4
vnetd_dhcp_replies_total{family="ipv6",network="shaped",type="reply"} 13
# HELP vnetd_dhcp_send_errors_total DHCP replies that could not be sent.
# TYPE vnetd_dhcp_send_errors_total counter
vnetd_dhcp_send_errors_total{family="ipv4",network="shaped"} 0
vnetd_dhcp_send_errors_total{family="ipv6",network="shaped"} 1
# HELP vnetd_dhcp_store_errors_total Lease store writes that failed; the reply was not sent.
# TYPE vnetd_dhcp_store_errors_total counter
vnetd_dhcp_store_errors_total{family="ipv4",network="shaped"} 1
vnetd_dhcp_store_errors_total{family="ipv6",network="shaped"} 0
# HELP vnetd_dns_cache_entries Answers in the cache.
# TYPE vnetd_dns_cache_entries gauge
vnetd_dns_cache_entries{network="shaped"} 4
# HELP vnetd_dns_cache_hits_total Forwarded names answered from the cache.
# TYPE vnetd_dns_cache_hits_total counter
vnetd_dns_cache_hits_total{network="shaped"} 12
# HELP vnetd_dns_cache_misses_total Forwarded names not in the cache.
# TYPE vnetd_dns_cache_misses_total counter
vnetd_dns_cache_misses_total{network="shaped"} 4
# HELP vnetd_dns_dropped_total DNS packets dropped unanswered: malformed (undecodable, not a query), overflow (too many queries waiting for upstreams), interface (UDP query that did not arrive on the bridge), panic (handling it panicked: a bug).
# TYPE vnetd_dns_dropped_total counter
vnetd_dns_dropped_total{network="shaped",reason="interface"} 6
vnetd_dns_dropped_total{network="shaped",reason="malformed"} 2
vnetd_dns_dropped_total{network="shaped",reason="overflow"} 0
vnetd_dns_dropped_total{network="shaped",reason="panic"} 1
# HELP vnetd_dns_forwarded_total Questions sent upstream (identical concurrent questions share one).
# TYPE vnetd_dns_forwarded_total counter
vnetd_dns_forwarded_total{network="shaped"} 4
# HELP vnetd_dns_queries_total DNS questions asked, by query type (other: the types not counted on their own).
# TYPE vnetd_dns_queries_total counter
vnetd_dns_queries_total{network="shaped",qtype="A"} 20
vnetd_dns_queries_total{network="shaped",qtype="AAAA"} 10
vnetd_dns_queries_total{network="shaped",qtype="other"} 1
# HELP vnetd_dns_refused_clients_total Queries from clients outside the network, answered REFUSED.
# TYPE vnetd_dns_refused_clients_total counter
vnetd_dns_refused_clients_total{network="shaped"} 1
# HELP vnetd_dns_responses_total DNS answers sent, by response code.
# TYPE vnetd_dns_responses_total counter
vnetd_dns_responses_total{network="shaped",rcode="NOERROR"} 25
vnetd_dns_responses_total{network="shaped",rcode="NXDOMAIN"} 5
vnetd_dns_responses_total{network="shaped",rcode="REFUSED"} 1
# HELP vnetd_dns_tcp_connections DNS TCP connections open.
# TYPE vnetd_dns_tcp_connections gauge
vnetd_dns_tcp_connections{network="shaped"} 3
# HELP vnetd_dns_tcp_rejected_total DNS TCP connections closed as soon as accepted: global (the server's bound reached), per_client (the client's).
# TYPE vnetd_dns_tcp_rejected_total counter
vnetd_dns_tcp_rejected_total{network="shaped",reason="global"} 2
vnetd_dns_tcp_rejected_total{network="shaped",reason="per_client"} 5
# HELP vnetd_dns_upstream_errors_total Upstream exchanges that failed or timed out.
# TYPE vnetd_dns_upstream_errors_total counter
vnetd_dns_upstream_errors_total{network="shaped"} 1
# HELP vnetd_dns_upstream_latency_seconds Time upstream servers took to answer.
# TYPE vnetd_dns_upstream_latency_seconds histogram
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.001"} 1
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.0025"} 1
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.005"} 1
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.01"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.025"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.05"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.1"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.25"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="0.5"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="1"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="2.5"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="5"} 3
vnetd_dns_upstream_latency_seconds_bucket{network="shaped",le="+Inf"} 4
vnetd_dns_upstream_latency_seconds_sum{network="shaped"} 1.5
vnetd_dns_upstream_latency_seconds_count{network="shaped"} 4
# HELP vnetd_firewall_restores_total Times a running network's firewall rules were found changed or missing and put back.
# TYPE vnetd_firewall_restores_total counter
vnetd_firewall_restores_total{network="shaped"} 1
# HELP vnetd_networks_active Networks running.
# TYPE vnetd_networks_active gauge
vnetd_networks_active 1
# HELP vnetd_networks_defined Networks with a persistent definition, running or not.
# TYPE vnetd_networks_defined gauge
vnetd_networks_defined 2
# HELP vnetd_ra_send_errors_total Router advertisements that could not be sent.
# TYPE vnetd_ra_send_errors_total counter
vnetd_ra_send_errors_total{network="shaped"} 1
# HELP vnetd_ra_sent_total Router advertisements sent: multicast (to all nodes) or unicast (answering one solicitation).
# TYPE vnetd_ra_sent_total counter
vnetd_ra_sent_total{destination="multicast",network="shaped"} 5
vnetd_ra_sent_total{destination="unicast",network="shaped"} 2
# HELP vnetd_ra_solicitations_answered_total Router solicitations an advertisement answered.
# TYPE vnetd_ra_solicitations_answered_total counter
vnetd_ra_solicitations_answered_total{network="shaped"} 3
# HELP vnetd_ra_solicitations_dropped_total Router solicitations dropped: malformed or rate_limited.
# TYPE vnetd_ra_solicitations_dropped_total counter
vnetd_ra_solicitations_dropped_total{network="shaped",reason="malformed"} 1
vnetd_ra_solicitations_dropped_total{network="shaped",reason="rate_limited"} 2
# HELP vnetd_ra_solicitations_received_total Router solicitations read.
# TYPE vnetd_ra_solicitations_received_total counter
vnetd_ra_solicitations_received_total{network="shaped"} 3
# HELP vnetd_tc_class_backlog_bytes Bytes queued in a tc HTB class.
# TYPE vnetd_tc_class_backlog_bytes gauge
vnetd_tc_class_backlog_bytes{class="1:1",device="virbr7",direction="inbound",network="shaped"} 0
vnetd_tc_class_backlog_bytes{class="1:1",device="virbr7",direction="outbound",network="shaped"} 1500
# HELP vnetd_tc_class_bytes_total Bytes through a tc HTB class (link layer).
# TYPE vnetd_tc_class_bytes_total counter
vnetd_tc_class_bytes_total{class="1:1",device="virbr7",direction="inbound",network="shaped"} 1e+06
vnetd_tc_class_bytes_total{class="1:1",device="virbr7",direction="outbound",network="shaped"} 50000
# HELP vnetd_tc_class_ceil_bytes_per_second Rate a tc HTB class may borrow up to.
# TYPE vnetd_tc_class_ceil_bytes_per_second gauge
vnetd_tc_class_ceil_bytes_per_second{class="1:1",device="virbr7",direction="inbound",network="shaped"} 2.048e+06
vnetd_tc_class_ceil_bytes_per_second{class="1:1",device="virbr7",direction="outbound",network="shaped"} 512000
# HELP vnetd_tc_class_drops_total Packets a tc HTB class dropped.
# TYPE vnetd_tc_class_drops_total counter
vnetd_tc_class_drops_total{class="1:1",device="virbr7",direction="inbound",network="shaped"} 3
vnetd_tc_class_drops_total{class="1:1",device="virbr7",direction="outbound",network="shaped"} 0
# HELP vnetd_tc_class_overlimits_total Times a tc HTB class was throttled.
# TYPE vnetd_tc_class_overlimits_total counter
vnetd_tc_class_overlimits_total{class="1:1",device="virbr7",direction="inbound",network="shaped"} 40
vnetd_tc_class_overlimits_total{class="1:1",device="virbr7",direction="outbound",network="shaped"} 1
# HELP vnetd_tc_class_packets_total Packets through a tc HTB class.
# TYPE vnetd_tc_class_packets_total counter
vnetd_tc_class_packets_total{class="1:1",device="virbr7",direction="inbound",network="shaped"} 700
vnetd_tc_class_packets_total{class="1:1",device="virbr7",direction="outbound",network="shaped"} 40
# HELP vnetd_tc_class_rate_bytes_per_second Rate a tc HTB class is guaranteed.
# TYPE vnetd_tc_class_rate_bytes_per_second gauge
vnetd_tc_class_rate_bytes_per_second{class="1:1",device="virbr7",direction="inbound",network="shaped"} 1.024e+06
vnetd_tc_class_rate_bytes_per_second{class="1:1",device="virbr7",direction="outbound",network="shaped"} 512000
# HELP vnetd_tftp_dropped_total TFTP requests not served: malformed (invalid, or over the size or option limits), busy (every transfer slot taken), panic (handling it panicked).
# TYPE vnetd_tftp_dropped_total counter
vnetd_tftp_dropped_total{network="shaped",reason="busy"} 2
vnetd_tftp_dropped_total{network="shaped",reason="malformed"} 4
vnetd_tftp_dropped_total{network="shaped",reason="panic"} 1
# HELP vnetd_tftp_requests_total Well-formed TFTP read and write requests read.
# TYPE vnetd_tftp_requests_total counter
vnetd_tftp_requests_total{network="shaped"} 9
`

func TestMetricsOfNetworks(t *testing.T) {
	shaper := &statsShaper{fakeShaper: newFakeShaper(), classes: map[string][]shaping.ClassStats{
		"virbr7": {
			{Dev: "virbr7", Class: shaping.NewHandle(1, 1), Rate: 1024000, Ceil: 2048000, Bytes: 1000000, Packets: 700, Drops: 3, Overlimits: 40},
			{Dev: "ifb7", Outbound: true, Class: shaping.NewHandle(1, 1), Rate: 512000, Ceil: 512000, Bytes: 50000, Packets: 40, Overlimits: 1, Backlog: 1500},
		},
	}}
	e := metricsEnv(t, &cannedServices{stats: cannedStats}, shaper)
	for _, xml := range []string{shapedNATXML, natXML} {
		if _, err := e.m.Define([]byte(xml)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Start("shaped"); err != nil {
		t.Fatal(err)
	}
	e.fw.flush()
	e.m.Reconcile()

	c := &collector{m: e.m}
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantMetrics)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	if problems, err := testutil.GatherAndLint(e.m.metrics.registry); err != nil || len(problems) > 0 {
		t.Errorf("lint of the registry: %v %+v", err, problems)
	}

	// A destroyed network's series go with it.
	if err := e.m.Destroy("shaped"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP vnetd_networks_active Networks running.
# TYPE vnetd_networks_active gauge
vnetd_networks_active 0
`), "vnetd_networks_active", "vnetd_dhcp_leases_active", "vnetd_firewall_restores_total"); err != nil {
		t.Error(err)
	}
}

// An adopted network whose rules had to be put back counts that restore.
func TestMetricsCountRestoreOnAdoption(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	e.m.Close()
	e.fw.flush()
	e.open(t)
	err := testutil.CollectAndCompare(&collector{m: e.m}, strings.NewReader(`
# HELP vnetd_firewall_restores_total Times a running network's firewall rules were found changed or missing and put back.
# TYPE vnetd_firewall_restores_total counter
vnetd_firewall_restores_total{network="default"} 1
`), "vnetd_firewall_restores_total")
	if err != nil {
		t.Error(err)
	}
}

func TestAPIMetrics(t *testing.T) {
	e := newEnv(t)
	h := Handler(e.m, e.m.log)
	do := func(method, path string) *http.Response {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		return w.Result()
	}
	do("GET", "/v1/networks")
	do("POST", "/v1/networks/nope/start")
	do("POST", "/v1/networks/other/start")
	do("GET", "/v1/no/such/thing")
	want := `
# HELP vnetd_api_errors_total Control API requests that failed, by route and API error code.
# TYPE vnetd_api_errors_total counter
vnetd_api_errors_total{error="not_found",method="/"} 1
vnetd_api_errors_total{error="not_found",method="POST /v1/networks/{id}/start"} 2
# HELP vnetd_api_requests_total Control API requests, by route (method and path pattern) and HTTP status code.
# TYPE vnetd_api_requests_total counter
vnetd_api_requests_total{code="200",method="GET /v1/networks"} 1
vnetd_api_requests_total{code="404",method="/"} 1
vnetd_api_requests_total{code="404",method="POST /v1/networks/{id}/start"} 2
`
	if err := testutil.GatherAndCompare(e.m.metrics.registry, strings.NewReader(want), "vnetd_api_requests_total", "vnetd_api_errors_total"); err != nil {
		t.Error(err)
	}

	resp := do("GET", "/metrics")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	for _, series := range []string{"vnetd_build_info{goversion=", "vnetd_networks_defined 0", "go_goroutines ", "process_cpu_seconds_total ",
		`vnetd_api_requests_total{code="200",method="GET /v1/networks"} 1`} {
		if !strings.Contains(string(body), series) {
			t.Errorf("GET /metrics lacks %s:\n%s", series, body)
		}
	}
}

// Scrapes run beside starts, destroys and reconciles without a race.
func TestMetricsScrapeDuringLifecycle(t *testing.T) {
	e := metricsEnv(t, &cannedServices{stats: cannedStats}, nil)
	e.m.Define([]byte(natXML))
	c := &collector{m: e.m}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				testutil.CollectAndCount(c)
			}
		}
	}()
	for range 20 {
		if err := e.m.Start("default"); err != nil {
			t.Fatal(err)
		}
		e.m.Reconcile()
		if err := e.m.Destroy("default"); err != nil {
			t.Fatal(err)
		}
		e.m.awaitReaped("virbr0")
	}
	close(stop)
	wg.Wait()
}

// --metrics-listen serves /metrics and nothing of the control API.
func TestServeMetrics(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveMetrics(ln, e.m, e.m.log)
	defer stop()
	base := "http://" + ln.Addr().String()
	if err := testutil.ScrapeAndCompare(base+"/metrics", strings.NewReader(`
# HELP vnetd_networks_active Networks running.
# TYPE vnetd_networks_active gauge
vnetd_networks_active 0
`), "vnetd_networks_active"); err != nil {
		t.Error(err)
	}
	resp, err := http.Get(base + "/v1/networks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("control API over the metrics listener: %s", resp.Status)
	}
}

// BenchmarkScrape is one GET /metrics of a daemon running 100 networks with
// DHCP, DNS and RA counters.
func BenchmarkScrape(b *testing.B) {
	dir := b.TempDir()
	m, err := Open(Config{ConfigDir: filepath.Join(dir, "etc"), StateDir: filepath.Join(dir, "state"),
		Host: newFakeHost(), Firewall: newFakeFirewall(), Services: &cannedServices{stats: cannedStats}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for i := range 100 {
		name := "n" + strconv.Itoa(i)
		xml := strings.NewReplacer("<name>default</name>", "<name>"+name+"</name>", "192.168.122.", "10.1."+strconv.Itoa(i)+".").Replace(natXML)
		if _, err := m.Define([]byte(xml)); err != nil {
			b.Fatal(err)
		}
		if err := m.Start(name); err != nil {
			b.Fatal(err)
		}
	}
	h := m.MetricsHandler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
