package testutil

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Encode applies the HTTP content codings listed in codings ("gzip, br")
// to b in order, as a sender does, and returns the result: gzip (and
// x-gzip), deflate (zlib), raw-deflate (deflate without its zlib wrapper,
// which some servers send), br and zstd.
func Encode(tb testing.TB, codings string, b []byte) []byte {
	tb.Helper()
	for _, c := range strings.Split(codings, ",") {
		var out bytes.Buffer
		var w io.WriteCloser
		switch strings.TrimSpace(c) {
		case "gzip", "x-gzip":
			w = gzip.NewWriter(&out)
		case "deflate":
			w = zlib.NewWriter(&out)
		case "raw-deflate":
			w, _ = flate.NewWriter(&out, flate.BestCompression)
		case "br":
			w = brotli.NewWriterLevel(&out, 5)
		case "zstd":
			w, _ = zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1))
		default:
			tb.Fatalf("encode: unknown coding %q", c)
		}
		if _, err := w.Write(b); err != nil {
			tb.Fatal(err)
		}
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
		b = out.Bytes()
	}
	return b
}

// Chunked frames b as an HTTP/1.1 chunked body of n-byte chunks, last
// chunk and empty trailer included.
func Chunked(b []byte, n int) []byte {
	var out bytes.Buffer
	for len(b) > 0 {
		k := min(n, len(b))
		fmt.Fprintf(&out, "%x\r\n%s\r\n", k, b[:k])
		b = b[k:]
	}
	out.WriteString("0\r\n\r\n")
	return out.Bytes()
}
