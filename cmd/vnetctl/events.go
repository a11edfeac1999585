package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
)

func init() {
	commands["net-event"] = command{"net-event [NETWORK | --network NETWORK] [--event lifecycle|port|lease] [--loop] [--timeout N] [--timestamp] [--json] [--list]",
		"wait for network events and print them", netEvent}
}

// eventKinds are the --event values, as virsh's event ids: the event
// types grouped the way they are printed.
var eventKinds = []string{"lifecycle", "port", "lease"}

// eventKind is the --event group of an event type.
func eventKind(typ string) string {
	switch typ {
	case api.EventPortCreated, api.EventPortDeleted:
		return "port"
	case api.EventLeaseAdded, api.EventLeaseRemoved:
		return "lease"
	case api.EventOverflow:
		return "overflow"
	}
	return "lifecycle"
}

// eventLine is an event as virsh net-event prints it: "event 'lifecycle'
// for network default: Started". Ports and leases follow the same pattern.
func eventLine(e api.Event) string {
	switch e.Type {
	case api.EventOverflow:
		return fmt.Sprintf("event 'overflow': %s", e.Detail)
	case api.EventPortCreated, api.EventPortDeleted:
		verb := "Created"
		if e.Type == api.EventPortDeleted {
			verb = "Deleted"
		}
		return fmt.Sprintf("event 'port' for network %s: %s %s", e.Network, verb, e.Port)
	case api.EventLeaseAdded, api.EventLeaseRemoved:
		verb := "Added"
		if e.Type == api.EventLeaseRemoved {
			verb = "Removed"
		}
		line := fmt.Sprintf("event 'lease' for network %s: %s %s %s", e.Network, verb, e.IP, e.MAC)
		if e.Hostname != "" {
			line += " " + e.Hostname
		}
		return line
	}
	what := e.Type
	if what != "" {
		what = strings.ToUpper(what[:1]) + what[1:]
	}
	return fmt.Sprintf("event 'lifecycle' for network %s: %s", e.Network, what)
}

// netEvent is virsh net-event: it waits for one event (all with --loop)
// until --timeout or Ctrl-C, then says how many it got; exit status 0 if
// any. Unlike virsh it listens to every kind unless --event narrows it.
func netEvent(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-event", stdout, stderr)
	network := s.fs.String("network", "", "only the events of this network (name or UUID)")
	kind := s.fs.String("event", "", "only events of this kind: "+strings.Join(eventKinds, ", "))
	loop := s.fs.Bool("loop", false, "print events until the timeout or Ctrl-C, not just the first")
	timeout := s.fs.Int("timeout", 0, "give up after this many seconds (0: never)")
	timestamp := s.fs.Bool("timestamp", false, "prefix each event with the time it happened")
	asJSON := s.fs.Bool("json", false, "print each event as a line of JSON")
	list := s.fs.Bool("list", false, "list the kinds of events")
	pos, ok := s.parseN(args, 0, 1)
	if !ok {
		return 2
	}
	if *list {
		for _, k := range eventKinds {
			fmt.Fprintln(stdout, k)
		}
		return 0
	}
	if len(pos) == 1 {
		if *network != "" && *network != pos[0] {
			fmt.Fprintln(stderr, "error: give the network once, as an argument or with --network")
			return 2
		}
		*network = pos[0]
	}
	if *kind != "" && !slices.Contains(eventKinds, *kind) {
		fmt.Fprintf(stderr, "error: unknown event kind %q (one of %s)\n", *kind, strings.Join(eventKinds, ", "))
		return 2
	}
	if *timeout < 0 {
		fmt.Fprintln(stderr, "error: --timeout must be a number of seconds")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*timeout)*time.Second)
		defer cancel()
	}
	count := 0
	overflow := false
	err := s.client().Events(ctx, *network, func(e api.Event) bool {
		if e.Type == api.EventOverflow {
			overflow = true
		} else if *kind != "" && eventKind(e.Type) != *kind {
			return true
		} else {
			count++
		}
		if *asJSON {
			json.NewEncoder(stdout).Encode(e)
		} else if *timestamp {
			fmt.Fprintf(stdout, "%s: %s\n", e.Time.Local().Format("2006-01-02 15:04:05.000-0700"), eventLine(e))
		} else {
			fmt.Fprintln(stdout, eventLine(e))
		}
		return *loop && !overflow
	})
	// How the wait ended goes to stdout as in virsh; with --json stdout
	// carries only events.
	trailer := stdout
	if *asJSON {
		trailer = stderr
	}
	switch {
	case overflow:
		fmt.Fprintln(stderr, "error: vnetd dropped this listener, which fell behind; events were lost")
		return 1
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintln(trailer, "event loop timed out")
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(trailer, "event loop interrupted")
	case errors.Is(err, client.ErrEventsEnded):
		fmt.Fprintln(trailer, "vnetd ended the event stream")
	case err != nil:
		return s.fail(err)
	}
	fmt.Fprintf(trailer, "events received: %d\n", count)
	if count == 0 {
		return 1
	}
	return 0
}
