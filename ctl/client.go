package ctl

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

	"github.com/spf13/cobra"
)

// SocketEnv overrides the default API socket of the client commands.
const SocketEnv = "DEEPWALL_SOCKET"

// maxResponseBytes bounds what the client reads from the agent.
const maxResponseBytes = 256 << 20

// client talks to a running agent over its unix socket.
type client struct {
	socket string
	http   *http.Client
}

func newClient(socket string) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 10 * time.Second,
	}
	return &client{socket: socket, http: &http.Client{Transport: tr, Timeout: apiWriteTimeout}}
}

// callError is an API call that the agent answered with an error.
type callError struct {
	Status int
	Body   APIError
}

func (e *callError) Error() string { return e.Body.Error }

// do calls method path with in as JSON body (nil: none) and decodes the
// answer into out (nil: discard; *[]byte: raw bytes).
func (c *client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := "http://deepwall" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
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
		ce := &callError{Status: resp.StatusCode}
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
func (c *client) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no agent listening on %s (is `deepwall run` running? --socket or %s name another)", c.socket, SocketEnv)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s: permission denied (the API needs root, the admin group or the viewer group)", c.socket)
	}
	return fmt.Errorf("agent at %s: %w", c.socket, err)
}

// socketFlag adds --socket to an agent command.
func socketFlag(cmd *cobra.Command, into *string) {
	def := os.Getenv(SocketEnv)
	if def == "" {
		def = DefaultSocket
	}
	cmd.Flags().StringVar(into, "socket", def, "the agent's API socket (env "+SocketEnv+")")
}

// outputFlag adds -o table|json.
func outputFlag(cmd *cobra.Command, into *string) {
	cmd.Flags().StringVarP(into, "output", "o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("-o %q: want table or json", o)
	}
	return nil
}

// printJSON writes v indented, as the API sends it.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
