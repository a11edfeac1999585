package ovs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is a connection to an ovsdb-server. It is safe for concurrent use;
// calls on one Client are multiplexed on its single connection.
type Client struct {
	conn net.Conn

	// wmu serialises writes, so that messages are never interleaved.
	wmu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan rpcResponse

	// done is closed once the connection is unusable; err says why.
	done     chan struct{}
	err      error
	failOnce sync.Once
	closeErr error

	// wg counts the read loop and the goroutines answering echo requests.
	wg sync.WaitGroup
}

// rpcMessage is any message from the server: a response to one of our
// calls (Result, Error, ID), a request (Method, Params, ID) or a
// notification (Method, Params, null ID).
type rpcMessage struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     json.RawMessage `json:"id"`
}

type rpcResponse struct {
	result json.RawMessage
	err    json.RawMessage
}

type rpcRequest struct {
	Method string `json:"method"`
	Params any    `json:"params"`
	ID     uint64 `json:"id"`
}

type rpcReply struct {
	ID     json.RawMessage `json:"id"`
	Result any             `json:"result"`
	Error  any             `json:"error"`
}

// RPCError is a JSON-RPC level error returned by the server for a call (for
// example an unknown database), as opposed to a failed operation inside a
// transaction, which is a *TransactError.
type RPCError struct {
	Method string
	// Err is the "error" member as the server sent it, usually an object
	// with "error" and "details" strings.
	Err json.RawMessage
}

func (e *RPCError) Error() string {
	var o struct{ Error, Details string }
	if json.Unmarshal(e.Err, &o) == nil && o.Error != "" {
		if o.Details != "" {
			return fmt.Sprintf("ovsdb %s: %s: %s", e.Method, o.Error, o.Details)
		}
		return fmt.Sprintf("ovsdb %s: %s", e.Method, o.Error)
	}
	return fmt.Sprintf("ovsdb %s: %s", e.Method, e.Err)
}

// Dial connects to the ovsdb-server listening on the unix socket (for
// example /run/openvswitch/db.sock; a "unix:" prefix as in ovs-vsctl --db is
// accepted). The context bounds the connect only.
func Dial(ctx context.Context, socket string) (*Client, error) {
	path := strings.TrimPrefix(socket, "unix:")
	if path == "" {
		return nil, errors.New("dial ovsdb: empty socket path")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial ovsdb at %s: %w", path, err)
	}
	return newClient(conn), nil
}

func newClient(conn net.Conn) *Client {
	c := &Client{
		conn:    conn,
		pending: make(map[uint64]chan rpcResponse),
		done:    make(chan struct{}),
	}
	c.wg.Add(1)
	go c.readLoop()
	return c
}

// Close closes the connection; calls in flight fail. It waits for the
// client's goroutines to end.
func (c *Client) Close() error {
	c.fail(errors.New("ovsdb connection closed"))
	c.wg.Wait()
	if c.closeErr != nil && !errors.Is(c.closeErr, net.ErrClosed) {
		return fmt.Errorf("close ovsdb connection: %w", c.closeErr)
	}
	return nil
}

// fail marks the connection unusable with reason err (the first reason
// wins) and closes it, which ends the read loop.
func (c *Client) fail(err error) {
	c.failOnce.Do(func() {
		c.err = err
		close(c.done)
		c.closeErr = c.conn.Close()
	})
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	dec := json.NewDecoder(c.conn)
	for {
		var m rpcMessage
		if err := dec.Decode(&m); err != nil {
			c.fail(fmt.Errorf("read from ovsdb: %w", err))
			return
		}
		if m.Method != "" {
			c.handleRequest(m)
			continue
		}
		id, err := strconv.ParseUint(string(m.ID), 10, 64)
		if err != nil {
			// Not one of our numeric ids: nothing waits for it.
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok {
			ch <- rpcResponse{result: m.Result, err: m.Error}
		}
	}
}

// handleRequest answers a request from the server: "echo" with its own
// params (RFC 7047 §4.1.11), anything else with an error. Notifications (a
// null id) need no answer. The answer is written from another goroutine so
// that the read loop never blocks on a write.
func (c *Client) handleRequest(m rpcMessage) {
	if isNull(m.ID) {
		return
	}
	reply := rpcReply{ID: m.ID}
	if m.Method == "echo" {
		params := m.Params
		if isNull(params) {
			params = json.RawMessage("[]")
		}
		reply.Result = params
	} else {
		reply.Error = map[string]string{"error": "unknown method", "details": m.Method}
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// A failed write has already failed the connection.
		_ = c.write(context.Background(), b)
	}()
}

// call sends one request and waits for its response, decoding its result
// into result.
func (c *Client) call(ctx context.Context, method string, params any, result any) error {
	ch := make(chan rpcResponse, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	b, err := json.Marshal(rpcRequest{Method: method, Params: params, ID: id})
	if err != nil {
		forget()
		return fmt.Errorf("ovsdb %s: encode request: %w", method, err)
	}
	if err := c.write(ctx, b); err != nil {
		forget()
		return fmt.Errorf("ovsdb %s: %w", method, err)
	}
	select {
	case r := <-ch:
		if !isNull(r.err) {
			return &RPCError{Method: method, Err: r.err}
		}
		if result == nil {
			return nil
		}
		if err := json.Unmarshal(r.result, result); err != nil {
			return fmt.Errorf("ovsdb %s: decode result: %w", method, err)
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("ovsdb %s: %w", method, ctx.Err())
	case <-c.done:
		forget()
		return fmt.Errorf("ovsdb %s: %w", method, c.err)
	}
}

// write sends one whole message. A write cut short (by an error or by ctx)
// may have left half a message on the stream, so it fails the connection.
func (c *Client) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return c.err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = c.conn.SetWriteDeadline(time.Unix(1, 0))
	})
	_, err := c.conn.Write(b)
	cancelled := !stop()
	if cancelled {
		<-fired
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		err = fmt.Errorf("write to ovsdb: %w", err)
		c.fail(err)
		return err
	}
	if cancelled {
		// The message went out whole, but the deadline is now in the past.
		if err := c.conn.SetWriteDeadline(time.Time{}); err != nil {
			err = fmt.Errorf("write to ovsdb: reset deadline: %w", err)
			c.fail(err)
			return err
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}
