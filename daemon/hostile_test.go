package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
)

// Hostile requests (issue 10): each is refused with a clear error, and the
// definitions and live state are exactly as before.

// defSnapshot is everything a refused request must leave alone: the
// configuration directory's files, byte for byte, and each network's live
// and inactive XML.
func defSnapshot(t *testing.T, e *testEnv) string {
	t.Helper()
	var b strings.Builder
	dir := filepath.Join(e.dir, "etc")
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "== %s\n%s\n", strings.TrimPrefix(path, dir), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := e.m.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		live, _ := e.m.XML(i.Name, false)
		inactive, _ := e.m.XML(i.Name, true)
		fmt.Fprintf(&b, "== %+v\n%s\n%s\n", i, live, inactive)
	}
	return b.String()
}

// hostileXML are definitions Define must refuse; each names the network
// "default", which is defined, so a refusal that changed it would show.
func hostileXML() map[string]string {
	named := func(name string) string {
		return strings.Replace(natXML, "<name>default</name>", "<name>"+name+"</name>", 1)
	}
	var hosts strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&hosts, "<host mac='52:54:00:%02x:%02x:%02x' ip='10.%d.%d.%d'/>", i>>16, i>>8&255, i&255, 1+i>>16, i>>8&255, i&255)
	}
	return map[string]string{
		"name with a slash":     named("../../etc/default"),
		"name ..":               named(".."),
		"hidden name":           named(".default"),
		"name with a newline":   named("def&#10;ault"),
		"name with a NUL":       named("def&#0;ault"),
		"name of 10 kB":         named(strings.Repeat("d", 10000)),
		"name invalid UTF-8":    named("def\xffault"),
		"empty name":            named(""),
		"billion laughs":        `<!DOCTYPE network [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>` + named("&b;"),
		"external entity":       `<!DOCTYPE network [<!ENTITY x SYSTEM "file:///etc/shadow">]>` + named("default") + "&x;",
		"invalid UTF-8":         strings.Replace(natXML, "<forward mode='nat'/>", "<forward mode='n\xc3\x28t'/>", 1),
		"100000 hosts with MAC": strings.Replace(natXML, "<dhcp>", "<dhcp>"+hosts.String(), 1),
		"truncated":             natXML[:len(natXML)/2],
		"not XML":               "{\"name\": \"default\"}",
	}
}

func TestHostileDefinitionsChangeNothing(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	before := defSnapshot(t, e)
	h := Handler(e.m, e.m.log)
	for name, doc := range hostileXML() {
		t.Run(name, func(t *testing.T) {
			_, err := e.m.Define([]byte(doc))
			if c := code(err); c != api.CodeInvalidDefinition {
				t.Fatalf("Define: %v (%s), want %s", err, c, api.CodeInvalidDefinition)
			}
			if len(err.Error()) > 2000 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			if _, err := e.m.Create([]byte(doc)); code(err) != api.CodeInvalidDefinition {
				t.Errorf("Create: %v", err)
			}
			for _, q := range []string{"", "?transient=true"} {
				rec := serve(h, "POST", "/v1/networks"+q, strings.NewReader(doc))
				if len(doc) > maxBody {
					checkError(t, rec, http.StatusBadRequest, api.CodeInvalidRequest)
				} else {
					checkError(t, rec, http.StatusUnprocessableEntity, api.CodeInvalidDefinition)
				}
			}
			if after := defSnapshot(t, e); after != before {
				t.Fatalf("a refused definition changed things:\n%s\nwas\n%s", after, before)
			}
		})
	}
}

// TestHostileIDs: network and port ids in request paths never reach the
// file system as paths, never create anything, and are refused as the
// caller's mistake.
func TestHostileIDs(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	// A definition just outside the store, which "../x" would reach.
	if err := os.WriteFile(filepath.Join(e.dir, "x.xml"), []byte(strings.Replace(natXML, "default", "x", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	before := defSnapshot(t, e)
	h := Handler(e.m, e.m.log)
	ids := []string{"../x", "..", ".", "../../etc/passwd", "a/b", "a\x00b", "a\nb", "\xff", strings.Repeat("n", 10000), " default", "default\x00"}
	for _, id := range ids {
		esc := url.PathEscape(id)
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/v1/networks/" + esc, ""},
			{"GET", "/v1/networks/" + esc + "/xml", ""},
			{"DELETE", "/v1/networks/" + esc, ""},
			{"POST", "/v1/networks/" + esc + "/start", ""},
			{"POST", "/v1/networks/" + esc + "/destroy", ""},
			{"PUT", "/v1/networks/" + esc + "/autostart", `{"autostart":true}`},
			{"POST", "/v1/networks/" + esc + "/update", `{"command":"add","section":"ip-dhcp-host","parentIndex":-1,"xml":"<host mac='52:54:00:00:00:09' ip='192.168.122.9'/>"}`},
			{"GET", "/v1/networks/" + esc + "/leases", ""},
			{"GET", "/v1/networks/" + esc + "/ports", ""},
			{"POST", "/v1/networks/" + esc + "/ports", portXML},
			{"GET", "/v1/networks/default/ports/" + esc + "/xml", ""},
			{"DELETE", "/v1/networks/default/ports/" + esc, ""},
			{"PUT", "/v1/networks/default/ports/" + esc + "/bandwidth", `{}`},
		} {
			rec := serve(h, r.method, r.path, strings.NewReader(r.body))
			// "." and ".." are redirected to the clean path, not served.
			if rec.Code < 300 || rec.Code >= 500 || rec.Code < 400 && id != "." && id != ".." {
				t.Errorf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
			}
		}
	}
	if after := defSnapshot(t, e); after != before {
		t.Fatalf("hostile ids changed things:\n%s\nwas\n%s", after, before)
	}
	if got, _ := os.ReadFile(filepath.Join(e.dir, "x.xml")); !bytes.Contains(got, []byte("<name>x</name>")) {
		t.Fatal("the file outside the store changed")
	}
}

// endless is a request body that never ends; it counts what was read.
type endless struct{ n int64 }

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

// TestHugeBodies: a 100 MB request is cut off at the limit, not read to
// the end (nor held in memory), and refused as the caller's mistake.
func TestHugeBodies(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	before := defSnapshot(t, e)
	h := Handler(e.m, e.m.log)
	for _, r := range []struct{ method, path string }{
		{"POST", "/v1/networks"},
		{"POST", "/v1/networks?transient=true"},
		{"POST", "/v1/networks/default/update"},
		{"PUT", "/v1/networks/default/autostart"},
		{"POST", "/v1/networks/default/ports"},
		{"PUT", "/v1/networks/default/ports/" + portID + "/bandwidth"},
	} {
		body := &endless{}
		rec := serve(h, r.method, r.path, io.LimitReader(body, 100<<20))
		if e := checkError(t, rec, http.StatusBadRequest, api.CodeInvalidRequest); e != nil && !strings.Contains(e.Message, fmt.Sprintf("request body over %d bytes", maxBody)) {
			t.Errorf("%s %s: %q", r.method, r.path, e.Message)
		}
		if body.n > maxBody+64<<10 {
			t.Errorf("%s %s: read %d bytes of the body, the limit is %d", r.method, r.path, body.n, maxBody)
		}
	}
	// Just under the limit, a document is read and refused for what it is.
	bad := strings.Replace(natXML, "192.168.122.254", "10.0.0.9", 1)
	doc := append([]byte(bad), bytes.Repeat([]byte(" "), conf.MaxInputSize-len(bad))...)
	rec := serve(h, "POST", "/v1/networks", bytes.NewReader(doc))
	if e := checkError(t, rec, http.StatusUnprocessableEntity, api.CodeInvalidDefinition); e != nil && !strings.Contains(e.Message, "network/ip[1]/dhcp/range[1]") {
		t.Errorf("a definition of %d bytes: %q", len(doc), e.Message)
	}
	if after := defSnapshot(t, e); after != before {
		t.Fatalf("huge requests changed things:\n%s\nwas\n%s", after, before)
	}
}

// TestMalformedJSON: the JSON bodies of the API, broken in every way.
func TestMalformedJSON(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	before := defSnapshot(t, e)
	h := Handler(e.m, e.m.log)
	bodies := []string{"", "null", "[]", "{", `{"command":`, `"x"`, "{}{}", `{"unknown":1}`, `{"command":1}`,
		`{"parentIndex":1e400}`, `{"parentIndex":-99999999999999999999}`, `{"live":"yes"}`, "\xff\xfe", strings.Repeat("[", 100000),
		`{"command":"add","section":"ip-dhcp-host","xml":"` + strings.Repeat("\\u0000", 1000) + `"}`,
		`{"command":"add","section":"ip-dhcp-host","parentIndex":99,"xml":"<host mac='52:54:00:00:00:09' ip='192.168.122.9'/>"}`,
		`{"command":"add","section":"ip-dhcp-host","parentIndex":-2,"xml":"<host mac='52:54:00:00:00:09' ip='192.168.122.9'/>"}`,
		`{"command":"add","section":"ip-dhcp-host","parentIndex":-1,"xml":"<!DOCTYPE x []><host/>"}`,
		`{"command":"add","section":"nonsense","xml":"<host/>"}`,
		`{"command":"explode","section":"ip-dhcp-host","xml":"<host/>"}`,
		`{"inbound":{"average":-1}}`, `{"inbound":{"average":18446744073709551616}}`, `{"inbound":7}`,
	}
	for _, body := range bodies {
		for _, path := range []string{"/v1/networks/default/update", "/v1/networks/default/autostart", "/v1/networks/default/ports/" + portID + "/bandwidth"} {
			method := "POST"
			if !strings.HasSuffix(path, "update") {
				method = "PUT"
			}
			rec := serve(h, method, path, strings.NewReader(body))
			if rec.Code < 400 || rec.Code >= 500 {
				// {} is a valid autostart request (off) and a valid
				// bandwidth request (for a port that does not exist).
				if !(body == "{}" || body == "null") || rec.Code >= 500 {
					t.Errorf("%s %s %.40q: %d %s", method, path, body, rec.Code, rec.Body)
				}
			}
		}
	}
	// Autostart off on a network that had it off changes nothing.
	if after := defSnapshot(t, e); after != before {
		t.Fatalf("malformed requests changed things:\n%s\nwas\n%s", after, before)
	}
}

// TestConcurrentLifecycle hammers one network with start, destroy, update,
// port and redefine calls from many goroutines at once (run with -race):
// each call succeeds or fails cleanly, and the end state is consistent.
func TestConcurrentLifecycle(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	h := Handler(e.m, e.m.log)
	host := func(i int) api.UpdateRequest {
		return api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: -1,
			XML: fmt.Sprintf("<host mac='52:54:00:00:01:%02x' name='vm%d' ip='192.168.122.%d'/>", i, i, 100+i)}
	}
	unhost := func(i int) api.UpdateRequest {
		r := host(i)
		r.Command = "delete"
		return r
	}
	// Errors a racing call may meet; anything else is a bug.
	expected := []string{api.CodeConflict, api.CodeNotActive, api.CodeInvalidDefinition, api.CodeNotFound}
	var mu sync.Mutex
	unexpected := map[string]int{}
	succeeded := map[string]int{}
	check := func(op string, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			succeeded[op]++
		case !slices.Contains(expected, code(err)):
			unexpected[op+": "+err.Error()]++
		}
	}
	const rounds = 40
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range rounds {
				switch (g + i) % 8 {
				case 0:
					check("start", e.m.Start("default"))
				case 1:
					check("destroy", e.m.Destroy("default"))
				case 2:
					_, err := e.m.Update("default", host(g))
					check("update", err)
				case 3:
					_, err := e.m.Update("default", unhost(g))
					check("update delete", err)
				case 4:
					port := strings.Replace(portXML, "5d744f21", fmt.Sprintf("5d744f%02x", g), 1)
					_, err := e.m.CreatePort("default", []byte(port), PortOptions{Tap: fmt.Sprintf("vtap%d", g), TapOwner: -1})
					check("port create", err)
				case 5:
					check("port delete", e.m.DeletePort("default", strings.Replace(portID, "5d744f21", fmt.Sprintf("5d744f%02x", g), 1)))
				case 6:
					_, err := e.m.Define([]byte(natXML))
					check("define", err)
					check("autostart", e.m.SetAutostart("default", i%2 == 0))
				case 7:
					// Through the API too: its answers must stay well formed.
					for _, r := range []struct{ method, path string }{{"POST", "/v1/networks/default/start"}, {"GET", "/v1/networks/default"},
						{"GET", "/v1/networks/default/xml"}, {"POST", "/v1/networks/default/destroy"}, {"GET", "/v1/networks?all=true"}} {
						rec := serve(h, r.method, r.path, nil)
						if rec.Code >= 500 {
							check(r.method+" "+r.path, fmt.Errorf("%d %s", rec.Code, rec.Body))
						}
					}
				}
			}
		})
	}
	wg.Wait()
	for msg, n := range unexpected {
		t.Errorf("%d× %s", n, msg)
	}
	t.Logf("succeeded: %v", succeeded)
	for _, op := range []string{"start", "destroy", "update", "port create", "define"} {
		if succeeded[op] == 0 {
			t.Errorf("no %s succeeded: the goroutines did not interleave", op)
		}
	}

	// The end state is consistent: a running network has its bridge, rules,
	// live record and port devices; a stopped one has none of them.
	info, err := e.m.Info("default")
	if err != nil {
		t.Fatal(err)
	}
	consistent := func(t *testing.T, active bool) {
		t.Helper()
		e.m.reapers.Wait()
		info, err := e.m.Info("default")
		if err != nil || info.Active != active {
			t.Fatalf("%+v %v, want active %v", info, err, active)
		}
		e.host.mu.Lock()
		_, bridge := e.host.bridges[info.Bridge]
		if len(e.host.bridges) > 1 || !active && len(e.host.bridges) != 0 {
			t.Errorf("bridges %v, network on %q", e.host.bridges, info.Bridge)
		}
		taps := len(e.host.links)
		attached := len(e.host.attached)
		e.host.mu.Unlock()
		e.fw.mu.Lock()
		_, rules := e.fw.applied["default"]
		e.fw.mu.Unlock()
		recs, _ := e.m.state.all()
		portRecs, _ := e.m.state.ports()
		ports, _ := e.m.ListPorts("default")
		if bridge != active || rules != active || (len(recs) == 1) != active {
			t.Fatalf("active %v: bridge %v, rules %v, live records %d", active, bridge, rules, len(recs))
		}
		if taps != len(ports) || attached != len(ports) || len(portRecs) != len(ports) {
			t.Fatalf("%d ports, %d taps, %d attached, %d port records", len(ports), taps, attached, len(portRecs))
		}
	}
	consistent(t, info.Active)
	if info.Active {
		// What a restarted vnetd finds must be the same network.
		live, _ := e.m.XML("default", false)
		e.m.Close()
		e.open(t)
		if again, _ := e.m.XML("default", false); !bytes.Equal(live, again) {
			t.Fatalf("after a restart the live network is\n%s\nwas\n%s", again, live)
		}
		consistent(t, true)
		if err := e.m.Destroy("default"); err != nil {
			t.Fatal(err)
		}
	}
	consistent(t, false)
	if _, err := e.m.XML("default", true); err != nil {
		t.Fatalf("the definition is gone: %v", err)
	}
}

// serve runs one request through h.
func serve(h http.Handler, method, target string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkError checks that rec is the API error code with status, and
// returns it.
func checkError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) *api.Error {
	t.Helper()
	var body api.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
		t.Errorf("status %d, body %.200q: not an API error (%v)", rec.Code, rec.Body, err)
		return nil
	}
	if rec.Code != status || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("status %d %+v, want %d %s", rec.Code, body.Error, status, code)
	}
	return body.Error
}
