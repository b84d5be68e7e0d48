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
	tr := &http.Transport{
		DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}
