// Package apiclient talks to a node agent's API: for the CLI, for a node
// asking or watching its peer, and for tests.
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

// Client is one agent's API.
type Client struct {
	base  string
	token string
	hc    *http.Client
	// stream carries event streams, each on a connection of its own that
	// is never pooled: a stream holds it for its whole life anyway.
	stream *http.Client
}

// Options tune a Client.
type Options struct {
	// CAFile verifies the agent's certificate instead of the system roots.
	CAFile string
}

// New returns a client for the agent at baseURL (http or https).
func New(baseURL, token string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("node URL %q: want http://host:port or https://host:port", baseURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // agents talk to each other directly
	tr.MaxIdleConnsPerHost = 16
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", opts.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	str := tr.Clone()
	str.DisableKeepAlives = true
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: &http.Client{Transport: tr}, stream: &http.Client{Transport: str}}, nil
}

// URL is the agent's base URL.
func (c *Client) URL() string { return c.base }

// CloseIdle releases idle connections.
func (c *Client) CloseIdle() {
	c.hc.CloseIdleConnections()
	c.stream.CloseIdleConnections()
}

// Error is an error answered by the agent.
type Error struct {
	HTTPStatus int
	Code       string
	Message    string
	// Status is the node's status after a refused or failed transition.
	Status *node.Snapshot
}

func (e *Error) Error() string { return e.Message }

// Status reads the node's status.
func (c *Client) Status(ctx context.Context) (node.Snapshot, error) {
	var s node.Snapshot
	err := c.do(ctx, "GET", "/api/v1/status", nil, &s)
	return s, err
}

// StatusJSON reads the node's status as the agent encodes it, whatever
// its kind (an mds or edge status is not a node.Snapshot).
func (c *Client) StatusJSON(ctx context.Context) (json.RawMessage, error) {
	var s json.RawMessage
	err := c.do(ctx, "GET", "/api/v1/status", nil, &s)
	return s, err
}

// Start asks for Start services and waits for the end of the transition.
func (c *Client) Start(ctx context.Context, force bool, reason string) (node.Snapshot, error) {
	var s node.Snapshot
	err := c.do(ctx, "POST", "/api/v1/services/start", map[string]any{"force": force, "reason": reason}, &s)
	return s, err
}

// Stop asks for Stop services and waits for the end of the transition.
func (c *Client) Stop(ctx context.Context, reason string) (node.Snapshot, error) {
	var s node.Snapshot
	err := c.do(ctx, "POST", "/api/v1/services/stop", map[string]any{"reason": reason}, &s)
	return s, err
}

// History reads up to limit audit entries older than before (0: newest).
func (c *Client) History(ctx context.Context, limit int, before uint64) ([]store.Entry, error) {
	var h struct {
		Entries []store.Entry `json:"entries"`
	}
	path := "/api/v1/history?limit=" + strconv.Itoa(limit)
	if before > 0 {
		path += "&before=" + strconv.FormatUint(before, 10)
	}
	err := c.do(ctx, "GET", path, nil, &h)
	return h.Entries, err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			Status *node.Snapshot `json:"status"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error.Message == "" {
			return &Error{HTTPStatus: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
		}
		return &Error{HTTPStatus: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Status: e.Status}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Events follows the agent's event stream and calls fn with every status,
// and beat (when not nil) at every heartbeat, until ctx ends or the stream
// fails. A stream silent for longer than idle (heartbeats included) counts
// as failed, so a dead agent is noticed.
func (c *Client) Events(parent context.Context, idle time.Duration, fn func(node.Snapshot), beat func()) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/api/v1/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("events: %s", resp.Status)
	}
	errIdle := fmt.Errorf("events: nothing received for %s", idle)
	timer := time.AfterFunc(idle, func() { cancel(errIdle) })
	defer timer.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var event string
	var data []byte
	for sc.Scan() {
		timer.Reset(idle)
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if event == "status" && len(data) > 0 {
				var s node.Snapshot
				if err := json.Unmarshal(data, &s); err != nil {
					return fmt.Errorf("events: decode status: %w", err)
				}
				fn(s)
			}
			event, data = "", data[:0]
		case line[0] == ':':
			if beat != nil {
				beat()
			}
		case bytes.HasPrefix(line, []byte("event:")):
			event = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
	switch {
	case parent.Err() != nil:
		return parent.Err()
	case context.Cause(ctx) == errIdle:
		return errIdle
	case sc.Err() != nil:
		return fmt.Errorf("events: %w", sc.Err())
	}
	return errors.New("events: stream ended")
}
