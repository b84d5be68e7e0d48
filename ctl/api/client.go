package api

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
	"os"
	"strings"
	"syscall"
	"time"
)

// Where the API is.
const (
	// DefaultSocket is the agent's socket unless --socket says otherwise.
	DefaultSocket = "/run/deepwall/deepwall.sock"
	// SocketEnv overrides the default API socket of the client commands.
	SocketEnv = "DEEPWALL_SOCKET"
)

const (
	// maxResponseBytes bounds what the client reads from the agent.
	maxResponseBytes = 256 << 20
	// callTimeout bounds one call: the agent's write timeout (a large
	// rule set compiles for a while).
	callTimeout = 10 * time.Minute
)

// Client talks to a running agent over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 10 * time.Second,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: callTimeout}}
}

// CallError is an API call that the agent answered with an error.
type CallError struct {
	Status int
	Body   ErrorBody
}

func (e *CallError) Error() string { return e.Body.Error }

// Do calls method path with in as JSON body (nil: none) and decodes the
// answer into out (nil: discard; *[]byte: raw bytes). An answer with an
// error status is a *CallError.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	return c.Send(ctx, method, path, q, ctype, body, out)
}

// Send is Do with a body of its own content type (ctype "": none), such
// as a rule file as application/yaml.
func (c *Client) Send(ctx context.Context, method, path string, q url.Values, ctype string, body io.Reader, out any) error {
	u := "http://deepwall" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		ce := &CallError{Status: resp.StatusCode}
		if json.Unmarshal(data, &ce.Body) != nil || ce.Body.Error == "" {
			ce.Body.Error = fmt.Sprintf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return ce
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		return nil
	}
}

// dialError explains a failed connection in one line.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no agent listening on %s (is `deepwall run` running? --socket or %s name another)", c.socket, SocketEnv)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s: permission denied (the API needs root, the admin group or the viewer group)", c.socket)
	}
	return fmt.Errorf("agent at %s: %w", c.socket, err)
}

// Status returns the agent's status (GET /v1/status).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.Do(ctx, http.MethodGet, "/v1/status", nil, nil, &st)
	return st, err
}

// HTTP returns the client's HTTP client, for calls Do does not make
// (raw bodies, other content types).
func (c *Client) HTTP() *http.Client { return c.http }
