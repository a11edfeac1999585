// Package client is the Go client of vnetd's control API: what vnetctl uses
// and what programs embedding vnetd's control import.
//
//	c := client.New(client.DefaultSocket)
//	info, err := c.Define(ctx, xml) // as virsh net-define
//	if err == nil {
//		err = c.Start(ctx, info.Name)
//	}
//
// The methods follow vnetctl's verbs (docs/api.md maps them to the
// endpoints). An error the daemon reports is an *api.Error: its Code is
// stable, its Message is for people (for a definition, every problem with
// its element and line).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vnetd/vnetd/api"
)

// DefaultSocket is where vnetd listens unless told otherwise.
const DefaultSocket = "/run/vnetd/vnetd.sock"

// Client talks to one vnetd over its unix socket.
type Client struct {
	socket string
	http   *http.Client
	stream *http.Client // without the request timeout, for event streams
}

// New returns a client for the daemon listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, stream: &http.Client{Transport: tr}}
}

// do sends a request and decodes a JSON answer into out (when not nil). An
// API error comes back as *api.Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) ([]byte, error) {
	u := "http://vnetd/" + api.Version + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("vnetd at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("vnetd at %s: reading answer: %w", c.socket, err)
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return nil, eb.Error
		}
		return nil, fmt.Errorf("vnetd at %s: %s: %s", c.socket, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("vnetd at %s: decoding answer: %w", c.socket, err)
		}
	}
	return data, nil
}

func networkPath(id string, rest string) string {
	return "/networks/" + url.PathEscape(id) + rest
}

// List returns the running networks, or all known ones with all.
func (c *Client) List(ctx context.Context, all bool) ([]api.NetworkInfo, error) {
	var out []api.NetworkInfo
	_, err := c.do(ctx, http.MethodGet, "/networks", url.Values{"all": {strconv.FormatBool(all)}}, "", nil, &out)
	return out, err
}

// Define stores a persistent network definition.
func (c *Client) Define(ctx context.Context, xml []byte) (api.NetworkInfo, error) {
	var out api.NetworkInfo
	_, err := c.do(ctx, http.MethodPost, "/networks", nil, "application/xml", xml, &out)
	return out, err
}

// Create starts a transient network.
func (c *Client) Create(ctx context.Context, xml []byte) (api.NetworkInfo, error) {
	var out api.NetworkInfo
	_, err := c.do(ctx, http.MethodPost, "/networks", url.Values{"transient": {"true"}}, "application/xml", xml, &out)
	return out, err
}

// Info describes a network given by name or UUID.
func (c *Client) Info(ctx context.Context, id string) (api.NetworkInfo, error) {
	var out api.NetworkInfo
	_, err := c.do(ctx, http.MethodGet, networkPath(id, ""), nil, "", nil, &out)
	return out, err
}

// Undefine removes a persistent definition.
func (c *Client) Undefine(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, networkPath(id, ""), nil, "", nil, nil)
	return err
}

// Start brings a defined network up.
func (c *Client) Start(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodPost, networkPath(id, "/start"), nil, "", nil, nil)
	return err
}

// Destroy takes a running network down.
func (c *Client) Destroy(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodPost, networkPath(id, "/destroy"), nil, "", nil, nil)
	return err
}

// SetAutostart marks or unmarks a network to start with vnetd.
func (c *Client) SetAutostart(ctx context.Context, id string, on bool) error {
	body, _ := json.Marshal(api.AutostartRequest{Autostart: on})
	_, err := c.do(ctx, http.MethodPut, networkPath(id, "/autostart"), nil, "application/json", body, nil)
	return err
}

// XML returns a network's XML: live view, or the persistent one with inactive.
func (c *Client) XML(ctx context.Context, id string, inactive bool) ([]byte, error) {
	return c.do(ctx, http.MethodGet, networkPath(id, "/xml"), url.Values{"inactive": {strconv.FormatBool(inactive)}}, "", nil, nil)
}

// Update applies a net-update.
func (c *Client) Update(ctx context.Context, id string, req api.UpdateRequest) (api.UpdateResult, error) {
	var out api.UpdateResult
	body, _ := json.Marshal(req)
	_, err := c.do(ctx, http.MethodPost, networkPath(id, "/update"), nil, "application/json", body, &out)
	return out, err
}

// PortOptions say how vnetd plugs a port (see vnetctl net-port-create).
type PortOptions struct {
	Attach     string // enslave this existing link
	Tap        string // create a persistent tap (or name the macvtap) of this name
	TapOwner   int    // -1: none
	MultiQueue bool
}

// CreatePort allocates and plugs a port on a running network; it returns
// the port's UUID.
func (c *Client) CreatePort(ctx context.Context, network string, xml []byte, o PortOptions) (string, error) {
	q := url.Values{}
	if o.Attach != "" {
		q.Set("attach", o.Attach)
	}
	if o.Tap != "" {
		q.Set("tap", o.Tap)
	}
	if o.TapOwner >= 0 {
		q.Set("tapOwner", strconv.Itoa(o.TapOwner))
	}
	if o.MultiQueue {
		q.Set("multiQueue", "true")
	}
	var out struct {
		UUID string `json:"uuid"`
	}
	_, err := c.do(ctx, http.MethodPost, networkPath(network, "/ports"), q, "application/xml", xml, &out)
	return out.UUID, err
}

// ListPorts lists a running network's ports.
func (c *Client) ListPorts(ctx context.Context, network string) ([]api.PortInfo, error) {
	var out []api.PortInfo
	_, err := c.do(ctx, http.MethodGet, networkPath(network, "/ports"), nil, "", nil, &out)
	return out, err
}

// PortXML returns a port's <networkport> XML.
func (c *Client) PortXML(ctx context.Context, network, port string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, networkPath(network, "/ports/"+url.PathEscape(port)+"/xml"), nil, "", nil, nil)
}

// DeletePort unplugs and removes a port.
func (c *Client) DeletePort(ctx context.Context, network, port string) error {
	_, err := c.do(ctx, http.MethodDelete, networkPath(network, "/ports/"+url.PathEscape(port)), nil, "", nil, nil)
	return err
}

// SetPortBandwidth changes a port's rates.
func (c *Client) SetPortBandwidth(ctx context.Context, network, port string, req api.BandwidthRequest) error {
	body, _ := json.Marshal(req)
	_, err := c.do(ctx, http.MethodPut, networkPath(network, "/ports/"+url.PathEscape(port)+"/bandwidth"), nil, "application/json", body, nil)
	return err
}

// Leases lists a network's current DHCP leases, optionally of one MAC.
func (c *Client) Leases(ctx context.Context, network, mac string) ([]api.Lease, error) {
	var out []api.Lease
	q := url.Values{}
	if mac != "" {
		q.Set("mac", mac)
	}
	_, err := c.do(ctx, http.MethodGet, networkPath(network, "/leases"), q, "", nil, &out)
	return out, err
}

// ErrEventsEnded is returned by Events when vnetd ends the stream: it is
// stopping, or dropped this reader after an overflow event.
var ErrEventsEnded = errors.New("vnetd ended the event stream")

// Events streams vnetd's events, of one network (name or UUID) or of all
// when network is empty, calling fn for each in order until fn returns
// false (Events then returns nil), ctx ends (ctx.Err()) or vnetd ends the
// stream (ErrEventsEnded). Only events after the call are delivered.
func (c *Client) Events(ctx context.Context, network string, fn func(api.Event) bool) error {
	u := "http://vnetd/" + api.Version + "/events"
	if network != "" {
		u += "?" + url.Values{"network": {network}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("vnetd at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return eb.Error
		}
		return fmt.Errorf("vnetd at %s: %s: %s", c.socket, resp.Status, bytes.TrimSpace(data))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var e api.Event
		if err := dec.Decode(&e); err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, io.EOF):
				return ErrEventsEnded
			}
			return fmt.Errorf("vnetd at %s: reading events: %w", c.socket, err)
		}
		if !fn(e) {
			return nil
		}
	}
}
