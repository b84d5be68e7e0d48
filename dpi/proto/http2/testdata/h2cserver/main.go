// Command h2cserver is an HTTP/2 cleartext server (golang.org/x/net/http2/h2c:
// prior knowledge and Upgrade: h2c) used to capture the conversations in
// ../conv. /api/ answers JSON; /grpc/ answers like a gRPC server: it echoes
// each length-prefixed request message and ends with grpc-status and
// grpc-message trailers. Run with `go run ./testdata/h2cserver -listen addr`.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=abc123; HttpOnly")
		io.WriteString(w, `{"items":[{"id":1,"note":"card 4111 1111 1111 1111"}]}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// gRPC: echo the request messages, then the status trailers.
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		w.Header().Set("Grpc-Status", "3")
		w.Header().Set("Grpc-Message", "bad note: 1 UNION SELECT")
	})
	srv := &http.Server{Addr: *listen, Handler: h2c.NewHandler(mux, &http2.Server{})}
	log.Fatal(srv.ListenAndServe())
}
