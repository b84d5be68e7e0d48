package http

import (
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

func TestResponseFindings(t *testing.T) {
	sc := NewScratch(Limits{})
	none := proto.FindingNone
	get := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	tests := []struct {
		findingCase
		prefix string
	}{
		{findingCase{"clean", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", nil, none}, get},
		{findingCase{"unsolicited", "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n", []proto.FindingKind{proto.HTTPUnsolicitedResponse}, none}, ""},
		{findingCase{"garbage", "SSH-2.0-x\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"no status", "HTTP/1.1\r\n\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"status letters", "HTTP/1.1 2OO OK\r\n\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"status four digits", "HTTP/1.1 2000 OK\r\n\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"status without reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", nil, none}, get},
		{findingCase{"version 2", "HTTP/2.0 200 OK\r\n\r\n", nil, proto.HTTPInvalidVersion}, get},
		{findingCase{"cl invalid", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", nil, proto.HTTPInvalidContentLength}, get},
		{findingCase{"cl conflict", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", nil, proto.HTTPContentLengthConflict}, get},
		{findingCase{"cl invalid on 304 is harmless", "HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidContentLength}, none}, get},
		{findingCase{"te not chunked reads until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", nil, none}, get},
		{findingCase{"te and cl", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPCLAndTE}, none}, get},
		{findingCase{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", nil, proto.HTTPInvalidChunkSize}, get},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkFindings(t, sc, proto.ToClient, tc.prefix, tc.findingCase)
			if len(tc.want) == 0 && tc.fatal == proto.FindingNone && len(r.findings) != 0 {
				t.Errorf("unexpected findings: %v", r.findings)
			}
		})
	}
}
