package ovs

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeServer accepts one connection on a unix socket and hands it to serve,
// which speaks raw JSON to the client.
func fakeServer(t *testing.T, serve func(dec *json.Decoder, conn net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "db.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		l.Close()
		if err != nil {
			return
		}
		defer conn.Close()
		serve(json.NewDecoder(conn), conn)
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("fake server did not finish")
		}
	})
	return sock
}

func dialTest(t *testing.T, sock string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type serverMsg struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     json.RawMessage `json:"id"`
}

func send(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	if _, err := conn.Write([]byte(s)); err != nil {
		t.Errorf("fake server write: %v", err)
	}
}

// TestEchoAndOutOfOrder: the server sends an echo request (and a
// notification) before answering, and answers two calls in reverse order;
// each call gets its own result.
func TestEchoAndOutOfOrder(t *testing.T) {
	echoed := make(chan serverMsg, 1)
	sock := fakeServer(t, func(dec *json.Decoder, conn net.Conn) {
		var a, b serverMsg
		if dec.Decode(&a) != nil || dec.Decode(&b) != nil {
			t.Error("fake server: no requests")
			return
		}
		// No framing: several messages in one write, split oddly.
		send(t, conn, `{"method":"update","params":[null,{}],"id":null}{"method":"echo","params":["x",1],"id":"echo"}`)
		var e serverMsg
		if err := dec.Decode(&e); err != nil {
			t.Errorf("fake server: no echo reply: %v", err)
			return
		}
		echoed <- e
		reply := func(m serverMsg) string {
			var p []string
			json.Unmarshal(m.Params, &p)
			return `{"id":` + string(m.ID) + `,"result":"` + p[0] + `","error":null}`
		}
		both := reply(b) + "\n" + reply(a)
		send(t, conn, both[:7])
		send(t, conn, both[7:])
	})
	c := dialTest(t, sock)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	results := make(chan string, 2)
	errs := make(chan error, 2)
	call := func(p string) {
		var r string
		if err := c.call(ctx, "m", []string{p}, &r); err != nil {
			errs <- err
			return
		}
		results <- p + "=" + r
	}
	go call("first")
	// The fake server reads "first" before "second".
	time.Sleep(50 * time.Millisecond)
	go call("second")
	for range 2 {
		select {
		case r := <-results:
			if r != "first=first" && r != "second=second" {
				t.Errorf("mismatched response: %s", r)
			}
		case err := <-errs:
			t.Fatal(err)
		}
	}
	e := <-echoed
	if string(e.ID) != `"echo"` || canon(t, string(e.Result)) != `["x",1]` || string(e.Error) != "null" {
		t.Errorf("echo reply: id %s result %s error %s", e.ID, e.Result, e.Error)
	}
}

// TestCancel: a call whose context ends returns at once; the client stays
// usable and ignores the late response.
func TestCancel(t *testing.T) {
	sock := fakeServer(t, func(dec *json.Decoder, conn net.Conn) {
		var slow, fast serverMsg
		if dec.Decode(&slow) != nil || dec.Decode(&fast) != nil {
			t.Error("fake server: no requests")
			return
		}
		send(t, conn, `{"id":`+string(slow.ID)+`,"result":"late","error":null}`)
		send(t, conn, `{"id":`+string(fast.ID)+`,"result":"ok","error":null}`)
		dec.Decode(&fast) // until the client closes
	})
	c := dialTest(t, sock)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.call(ctx, "slow", []any{}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled call took %v", d)
	}

	var r string
	if err := c.call(context.Background(), "fast", []any{}, &r); err != nil || r != "ok" {
		t.Fatalf("call after a cancelled one: %q, %v", r, err)
	}
}

func TestRPCErrorAndServerGone(t *testing.T) {
	sock := fakeServer(t, func(dec *json.Decoder, conn net.Conn) {
		var m serverMsg
		if dec.Decode(&m) != nil {
			return
		}
		send(t, conn, `{"id":`+string(m.ID)+`,"result":null,"error":{"error":"unknown database","details":"get_schema: no such database"}}`)
		dec.Decode(&m) // then hang up without answering
	})
	c := dialTest(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err := c.call(ctx, "transact", []any{"Nope"}, nil)
	var re *RPCError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "unknown database") {
		t.Fatalf("error reply: %v", err)
	}

	// The write may fail (broken pipe) or the read (EOF): either way an
	// error, not a hang.
	err = c.call(ctx, "transact", []any{"Nope"}, nil)
	if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), "ovsdb") {
		t.Fatalf("call to a server that hung up: %v", err)
	}
	if err := c.call(ctx, "transact", []any{}, nil); err == nil {
		t.Fatal("call on a dead connection succeeded")
	}
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestDialMissingSocket(t *testing.T) {
	_, err := Dial(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "dial ovsdb") {
		t.Fatalf("Dial to nothing: %v", err)
	}
}
