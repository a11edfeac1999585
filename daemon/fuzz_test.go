package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/api"
)

// FuzzAPI sends arbitrary requests (method, request target, body) through
// the control API to a Manager over fakes that has a running network with
// a port and a stopped one. Nothing may panic; every error is an API error
// whose status matches its code; a refused request (4xx) changes nothing;
// and 500, the host failing, only answers requests that ask the host for
// something (the fakes refuse a device pool without devices, a port on a
// link that does not exist, rates without tc).
func FuzzAPI(f *testing.F) {
	update := `{"command":"add-last","section":"ip-dhcp-host","parentIndex":-1,"xml":"<host mac='52:54:00:00:00:07' name='vm7' ip='192.168.122.7'/>","live":true,"config":true}`
	for _, s := range []struct{ method, target, body string }{
		{"GET", "/v1/networks?all=true", ""},
		{"GET", "/v1/networks/default", ""},
		{"GET", "/v1/networks/default/xml?inactive=1", ""},
		{"GET", "/v1/networks/default/leases?mac=52:54:00:00:00:01", ""},
		{"GET", "/v1/networks/default/ports", ""},
		{"GET", "/v1/networks/default/ports/" + portID + "/xml", ""},
		{"POST", "/v1/networks", natXML},
		{"POST", "/v1/networks?transient=true", strings.NewReplacer("default", "scratch", "122", "123").Replace(natXML)},
		{"POST", "/v1/networks", "<network><name>pool</name><forward mode='bridge'/><bridge name='br0'/></network>"},
		{"POST", "/v1/networks/idle/start", ""},
		{"POST", "/v1/networks/default/destroy", ""},
		{"DELETE", "/v1/networks/idle", ""},
		{"PUT", "/v1/networks/default/autostart", `{"autostart":true}`},
		{"POST", "/v1/networks/default/update", update},
		{"POST", "/v1/networks/default/update", `{"command":"delete","section":"ip-dhcp-range","xml":"<range start='192.168.122.2' end='192.168.122.254'/>"}`},
		{"POST", "/v1/networks/default/ports?tap=vnet7&tapOwner=107&multiQueue=true", strings.Replace(portXML, "5d744f21", "5d744f22", 1)},
		{"POST", "/v1/networks/default/ports?attach=eth0", strings.Replace(portXML, "5d744f21", "5d744f23", 1)},
		{"DELETE", "/v1/networks/default/ports/" + portID, ""},
		{"PUT", "/v1/networks/default/ports/" + portID + "/bandwidth", `{"inbound":{"average":1000,"peak":2000,"burst":64,"floor":100}}`},
		{"GET", "/v1/networks/" + strings.Repeat("%2e%2e%2f", 3) + "etc", ""},
		{"PATCH", "/v1/networks/default", "{}"},
		{"GET", "/nope", ""},
	} {
		f.Add(s.method, s.target, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		// What net/http's server would hand the handler, or nothing.
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: vnetd\r\nContent-Length: %d\r\n\r\n", method, target, len(body))
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + string(body))))
		if err != nil {
			return
		}
		// The profiler (a CPU profile takes 30 s) and the event stream
		// (it never ends) have tests of their own.
		if strings.Contains(req.URL.Path, "debug") || strings.Contains(req.URL.Path, "events") {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req = req.WithContext(ctx)

		e := fuzzEnv(t)
		before := defSnapshot(t, e)
		rec := httptest.NewRecorder()
		began := time.Now()
		Handler(e.m, e.m.log).ServeHTTP(rec, req)
		if took := time.Since(began); took > 5*time.Second {
			t.Fatalf("%s %s: took %v", req.Method, req.URL, took)
		}

		status := rec.Code
		if status >= 500 && !asksHost(req) {
			t.Fatalf("%s %s: %d %s", req.Method, req.URL, status, rec.Body)
		}
		if rec.Header().Get("Content-Type") == "application/json" && status >= 400 {
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || eb.Error.Message == "" {
				t.Fatalf("%s %s: %d, not an API error: %q", req.Method, req.URL, status, rec.Body)
			}
			if want, ok := statusOf[eb.Error.Code]; !ok || want != status {
				t.Fatalf("%s %s: status %d with code %q", req.Method, req.URL, status, eb.Error.Code)
			}
		}
		if status >= 200 && status < 300 && rec.Header().Get("Content-Type") == "application/json" && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: %d with invalid JSON %q", req.Method, req.URL, status, rec.Body)
		}
		if status >= 300 && status < 500 {
			if after := defSnapshot(t, e); after != before {
				t.Fatalf("%s %s: refused (%d %s), yet it changed\n%s\nwas\n%s", req.Method, req.URL, status, rec.Body, after, before)
			}
		}
	})
}

// fuzzEnv is a fresh Manager over fakes with a running network "default"
// that has port portID (a tap vnetd made) and a stopped network "idle".
func fuzzEnv(t *testing.T) *testEnv {
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw,
		SysfsRoot: filepath.Join(e.dir, "sys")})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	t.Cleanup(func() { m.Close() })
	idle := `<network><name>idle</name><bridge name='virbr5'/><ip address='10.5.0.1' prefix='24'/></network>`
	for _, def := range []string{natXML, idle} {
		if _, err := m.Define([]byte(def)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePort("default", []byte(portXML), PortOptions{Tap: "vnet0", TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
	return e
}

// asksHost reports whether req asks the host for something it may refuse:
// starting a network (or a transient one), plugging, unplugging or shaping
// a port.
func asksHost(req *http.Request) bool {
	p := req.URL.Path
	switch {
	case req.Method == "POST" && (strings.HasSuffix(p, "/start") || strings.HasSuffix(p, "/destroy") || strings.HasSuffix(p, "/ports")):
		return true
	case req.Method == "POST" && strings.HasPrefix(p, "/v1/networks") && bytes.Contains([]byte(req.URL.RawQuery), []byte("transient")):
		return true
	case req.Method == "PUT" && strings.HasSuffix(p, "/bandwidth"), req.Method == "DELETE" && strings.Contains(p, "/ports/"):
		return true
	}
	return false
}
