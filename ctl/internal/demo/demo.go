// Package demo is the web server of deepwall's demo (`deepwall demo-http
// serve`): a few pages, one of which leaks a card number, so that the
// demo needs nothing but deepwall itself in its namespaces.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Card is a test card number (Luhn-valid, the well-known Visa test
// number) that the demo server leaks in a response.
const Card = "4111 1111 1111 1111"

// Serve serves the demo's pages on addr until ctx is done.
func Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the demo server: %s %s\n", r.Method, r.URL.Path)
	})
	mux.HandleFunc("/search", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d results for %q\n", len(r.URL.Query().Get("q"))%7, r.URL.Query().Get("q"))
	})
	mux.HandleFunc("/account", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<html><body>Name: Alice Example<br>Card on file: %s<br>Expires 12/29</body></html>\n", Card)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, io.LimitReader(r.Body, 1<<20))
	})
	return mux
}
