package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/deepwall/deepwall/ctl/internal/demo"
	"github.com/spf13/cobra"
)

// The demo's HTTP server and client, hidden subcommands so that the demo
// needs nothing but deepwall itself (no curl, no python) in its namespaces.

// Exit statuses of `deepwall demo-http get`.
const (
	demoExitReset   = 2 // the connection was reset: blocked
	demoExitTimeout = 3 // no answer in time
)

func newDemoHTTPCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "demo-http",
		Short:  "HTTP server and client for the demo",
		Hidden: true,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "serve ADDR",
		Short: "Serve the demo's pages on ADDR until interrupted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return demo.Serve(cmd.Context(), args[0])
		},
	})
	var timeout time.Duration
	var headers []string
	var data string
	get := &cobra.Command{
		Use:   "get URL",
		Short: "Fetch URL once and print one line about the answer",
		Long: `get fetches URL on a new connection and prints the status and body size.
Exit status: 0 answered, 2 connection reset (blocked), 3 no answer in time,
1 any other failure.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return demoGet(cmd, args[0], timeout, headers, data)
		},
	}
	get.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	get.Flags().StringArrayVarP(&headers, "header", "H", nil, "extra header, Name: value")
	get.Flags().StringVarP(&data, "data", "d", "", "POST this body")
	cmd.AddCommand(get)
	return cmd
}

func demoGet(cmd *cobra.Command, url string, timeout time.Duration, headers []string, data string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	method, body := http.MethodGet, io.Reader(nil)
	if data != "" {
		method, body = http.MethodPost, strings.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("header %q: want Name: value", h)
		}
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if data != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	var n int64
	if err == nil {
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	out := cmd.OutOrStdout()
	switch {
	case err == nil:
		fmt.Fprintf(out, "%s, %d bytes\n", resp.Status, n)
		return nil
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		fmt.Fprintln(out, "connection reset")
		return &exitError{code: demoExitReset, err: errors.New("connection reset")}
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		fmt.Fprintln(out, "no answer")
		return &exitError{code: demoExitTimeout, err: errors.New("no answer in time")}
	}
	fmt.Fprintln(out, "error:", err)
	return &exitError{code: 1, err: err}
}
