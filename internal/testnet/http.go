package testnet

import (
	"context"
	"net"
	"net/http"
	"time"
)

// HTTPClient is an HTTP client whose connections are made inside ns
// (keep-alive connections reused when keepAlive).
func HTTPClient(ns *NS, keepAlive bool) *http.Client {
	tr := &http.Transport{DisableKeepAlives: !keepAlive, DialContext: ns.DialContext}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// DialContext connects from inside ns (a 5 s dial timeout), for
// transports and clients that take a dial function.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
