package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/api"
)

func TestEventLine(t *testing.T) {
	tests := []struct {
		e    api.Event
		want string
	}{
		{api.Event{Type: api.EventStarted, Network: "default"}, "event 'lifecycle' for network default: Started"},
		{api.Event{Type: api.EventUndefined, Network: "default"}, "event 'lifecycle' for network default: Undefined"},
		{api.Event{Type: api.EventUpdated, Network: "lab"}, "event 'lifecycle' for network lab: Updated"},
		{api.Event{Type: api.EventPortCreated, Network: "default", Port: "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"},
			"event 'port' for network default: Created 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"},
		{api.Event{Type: api.EventLeaseAdded, Network: "default", IP: "192.168.122.10", MAC: "52:54:00:00:00:0a", Hostname: "vm"},
			"event 'lease' for network default: Added 192.168.122.10 52:54:00:00:00:0a vm"},
		{api.Event{Type: api.EventLeaseRemoved, Network: "default", IP: "192.168.122.10", MAC: "52:54:00:00:00:0a"},
			"event 'lease' for network default: Removed 192.168.122.10 52:54:00:00:00:0a"},
		{api.Event{Type: api.EventOverflow, Detail: "lost"}, "event 'overflow': lost"},
	}
	for _, tc := range tests {
		if got := eventLine(tc.e); got != tc.want {
			t.Errorf("%+v:\n got %q\nwant %q", tc.e, got, tc.want)
		}
	}
}

// fakeEventDaemon serves GET /v1/events with events, then holds the stream
// open (or ends it with end); it records the network asked for.
func fakeEventDaemon(t *testing.T, events []api.Event, end bool) (socket string, asked <-chan string) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "vnetd.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	networks := make(chan string, 10)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		networks <- r.URL.Query().Get("network")
		enc := json.NewEncoder(w)
		for _, e := range events {
			enc.Encode(e)
		}
		w.(http.Flusher).Flush()
		if !end {
			<-r.Context().Done()
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return socket, networks
}

func TestNetEvent(t *testing.T) {
	at := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	events := []api.Event{
		{Time: at, Type: api.EventDefined, Network: "default"},
		{Time: at, Type: api.EventLeaseAdded, Network: "default", IP: "192.168.122.10", MAC: "52:54:00:00:00:0a"},
		{Time: at, Type: api.EventStarted, Network: "default"},
	}
	tests := []struct {
		name    string
		args    []string
		events  []api.Event
		end     bool
		status  int
		stdout  []string
		stderr  string
		network string
	}{
		{name: "first event only", args: []string{"default"}, events: events, status: 0, network: "default",
			stdout: []string{"event 'lifecycle' for network default: Defined", "events received: 1"}},
		{name: "loop until the timeout", args: []string{"--loop", "--timeout", "1"}, events: events, status: 0,
			stdout: []string{"event 'lifecycle' for network default: Defined", "event 'lease' for network default: Added 192.168.122.10 52:54:00:00:00:0a",
				"event 'lifecycle' for network default: Started", "event loop timed out", "events received: 3"}},
		{name: "kind filter", args: []string{"--event", "lease", "--network", "default"}, events: events, status: 0, network: "default",
			stdout: []string{"event 'lease' for network default: Added 192.168.122.10 52:54:00:00:00:0a", "events received: 1"}},
		{name: "nothing before the timeout", args: []string{"--timeout", "1"}, status: 1,
			stdout: []string{"event loop timed out", "events received: 0"}},
		{name: "json", args: []string{"--json", "--loop"}, events: events[:1], end: true, status: 0,
			stdout: []string{`{"time":"2025-05-01T12:00:00Z","type":"defined","network":"default"}`}, stderr: "vnetd ended the event stream\nevents received: 1"},
		{name: "overflow", args: []string{"--loop"}, events: []api.Event{{Type: api.EventOverflow, Detail: "lost"}}, end: true, status: 1,
			stdout: []string{"event 'overflow': lost"}, stderr: "fell behind"},
		{name: "unknown kind", args: []string{"--event", "bogus"}, status: 2, stderr: `unknown event kind "bogus"`},
		{name: "list", args: []string{"--list"}, status: 0, stdout: []string{"lifecycle", "port", "lease"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			socket, asked := fakeEventDaemon(t, tc.events, tc.end)
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"--socket", socket, "net-event"}, tc.args...), &stdout, &stderr)
			if status != tc.status {
				t.Errorf("status %d, want %d; stderr %s", status, tc.status, stderr.String())
			}
			got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
			if len(tc.stdout) == 0 {
				got = nil
			}
			if diff := cmp.Diff(tc.stdout, got); diff != "" && tc.stdout != nil {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			select {
			case n := <-asked:
				if n != tc.network {
					t.Errorf("asked for network %q, want %q", n, tc.network)
				}
			default:
			}
		})
	}
}
