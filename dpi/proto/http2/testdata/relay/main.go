// Command relay records the two byte streams of TCP connections: it
// accepts on -listen, connects each client to -upstream, copies both ways
// and writes connection i's client-to-server bytes to <-out>.<i>.c2s and its
// server-to-client bytes to <-out>.<i>.s2c. It made the conversations in
// ../conv (see ../conv/README.md); it lives under testdata so that
// `go build ./...` leaves it alone: run it with `go run ./testdata/relay`.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to accept on")
	upstream := flag.String("upstream", "127.0.0.1:8080", "server to relay to")
	out := flag.String("out", "conv", "output file prefix")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relay(c, *upstream, fmt.Sprintf("%s.%d", *out, i))
	}
}

func relay(c net.Conn, upstream, prefix string) {
	defer c.Close()
	s, err := net.Dial("tcp", upstream)
	if err != nil {
		log.Print(err)
		return
	}
	defer s.Close()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn, name string) {
		defer wg.Done()
		f, err := os.Create(name)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		io.Copy(io.MultiWriter(dst, f), src)
		dst.(*net.TCPConn).CloseWrite()
	}
	wg.Add(2)
	go cp(s, c, prefix+".c2s")
	go cp(c, s, prefix+".s2c")
	wg.Wait()
	log.Printf("%s done", prefix)
}
