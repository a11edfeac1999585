package dnsd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/nettest"
)

// TestTCPHoldFigures measures what a guest holding many TCP connections
// to port 53 costs the server: its fds and RSS while a client in another
// namespace (a separate process, so that its sockets are not counted)
// keeps VNETD_DNS_TCP_FIGURES connections alive with a query a second.
// VNETD_DNS_TCP_ADDRS spreads them over that many guest addresses (1 by
// default). It only runs when asked, for bench/RESULTS.md:
//
//	VNETD_DNS_TCP_FIGURES=3000 go test ./dnsd -run TestTCPHoldFigures -v
func TestTCPHoldFigures(t *testing.T) {
	conns, _ := strconv.Atoi(os.Getenv("VNETD_DNS_TCP_FIGURES"))
	if conns <= 0 {
		t.Skip("set VNETD_DNS_TCP_FIGURES=N to measure N held TCP connections")
	}
	nettest.SkipUnlessRoot(t)
	addrs, _ := strconv.Atoi(os.Getenv("VNETD_DNS_TCP_ADDRS"))
	addrs = max(addrs, 1)
	host := nettest.NewNS(t, "dfh")
	guest := nettest.NewNS(t, "dfg")
	bridge := nettest.Unique("brf", 15)
	must := func(args ...string) { nettest.Must(t, "ip", args...) }
	must("-n", host, "link", "add", bridge, "type", "bridge")
	must("-n", host, "link", "set", bridge, "up")
	must("-n", host, "addr", "add", "10.77.0.1/16", "dev", bridge)
	nettest.Veth(t, host, "vg", guest, "eth0")
	must("-n", host, "link", "set", "vg", "master", bridge)
	for i := range addrs {
		must("-n", guest, "addr", "add", fmt.Sprintf("10.77.%d.%d/16", 1+i/250, 1+i%250), "dev", "eth0")
	}
	n, err := conf.Parse([]byte(fmt.Sprintf(`<network><name>fig</name><bridge name='%s'/>
<dns><host ip='10.77.0.10'><hostname>web</hostname></host></dns>
<ip address='10.77.0.1' prefix='16'/></network>`, bridge)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Network: n, Bridge: bridge, ResolvConf: os.DevNull, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := nettest.Do(host, func() error { return s.Start(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	runtime.GC()
	fds0, rss0 := procFDs(t), procRSS(t)
	cmd := exec.Command("ip", "netns", "exec", guest, os.Args[0], "-test.run=^TestTCPHoldClient$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("VNETD_DNS_TCP_CLIENT=%d,%d", conns, addrs))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var peakFDs, peakRSS int
	done := make(chan string, 1)
	go func() {
		var last string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "client:") {
				last = sc.Text()
			}
		}
		done <- last
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var result string
wait:
	for {
		select {
		case result = <-done:
			break wait
		case <-tick.C:
			peakFDs, peakRSS = max(peakFDs, procFDs(t)), max(peakRSS, procRSS(t))
		}
	}
	cmd.Wait()
	t.Logf("%d connections from %d addresses: fds %d -> peak %d, RSS %d -> peak %d KiB; %s; stats %+v",
		conns, addrs, fds0, peakFDs, rss0, peakRSS, result, s.Stats())
}

// TestTCPHoldClient is the client of TestTCPHoldFigures, run in the
// guest's namespace: it opens the connections, asks on each one a second
// and says how many were still answered at the end.
func TestTCPHoldClient(t *testing.T) {
	spec := os.Getenv("VNETD_DNS_TCP_CLIENT")
	if spec == "" {
		t.Skip("the client of TestTCPHoldFigures")
	}
	var conns, addrs int
	fmt.Sscanf(spec, "%d,%d", &conns, &addrs)
	const hold = 15 * time.Second
	q, _ := newQuery("web.", dns.TypeA).Pack()
	msg := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	var alive, opened atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(hold)
	for i := range conns {
		src := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("10.77.%d.%d", 1+(i%addrs)/250, 1+(i%addrs)%250))}
		d := net.Dialer{LocalAddr: src, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp4", "10.77.0.1:53")
		if err != nil {
			continue
		}
		opened.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 512)
			ok := true
			for time.Now().Before(end) {
				c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Write(msg); err != nil {
					ok = false
					break
				}
				if _, err := c.Read(buf); err != nil {
					ok = false
					break
				}
				time.Sleep(time.Second)
			}
			if ok {
				alive.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("client: %d connected, %d still answered after %v\n", opened.Load(), alive.Load(), hold)
}

func procFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// procRSS is VmRSS in KiB.
func procRSS(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
