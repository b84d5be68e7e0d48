package ssh

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

type recorder struct {
	lines    []string
	findings []proto.FindingKind
	fatal    bool
}

func (r *recorder) Banner(dir proto.Dir, b *Banner) {
	r.lines = append(r.lines, fmt.Sprintf("banner %s proto=%q software=%q comments=%q line=%q", dir, b.ProtoVersion, b.Software, b.Comments, b.Line))
}

func (r *recorder) Finding(f proto.Finding) {
	r.findings = append(r.findings, f.Kind)
	r.fatal = r.fatal || f.Fatal
	r.lines = append(r.lines, fmt.Sprintf("finding %s %s@%d fatal=%v", f.Kind, f.Dir, f.Offset, f.Fatal))
}

func (r *recorder) String() string { return strings.Join(r.lines, "\n") }

func run(client, server [][]byte) (*recorder, bool) {
	r := &recorder{}
	p := NewParser(r)
	done := false
	for _, c := range client {
		done = p.Feed(proto.ToServer, c)
	}
	for _, c := range server {
		done = p.Feed(proto.ToClient, c)
	}
	return r, done
}

func one(s string) [][]byte { return [][]byte{[]byte(s)} }

func TestBanners(t *testing.T) {
	const client = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
	const server = "SSH-2.0-OpenSSH_9.6\r\n"
	tests := []struct {
		name           string
		client, server string
		want           []string
		kinds          []proto.FindingKind
		fatal, done    bool
	}{
		{"openssh", client + "\x00\x00\x05\xdc binary kex", server, []string{
			`banner to_server proto="2.0" software="OpenSSH_9.2p1" comments="Debian-2+deb12u3" line="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"`,
			`banner to_client proto="2.0" software="OpenSSH_9.6" comments="" line="SSH-2.0-OpenSSH_9.6"`,
		}, nil, false, true},
		{"cisco 1.99 with dash in software", client, "SSH-1.99-Cisco-1.25\r\n", []string{`proto="1.99" software="Cisco-1.25"`}, nil, false, true},
		{"server lines before banner", client, "Welcome to host\r\nAuthorized use only\r\n" + server, []string{`banner to_client proto="2.0" software="OpenSSH_9.6"`}, nil, false, true},
		{"ssh1", "SSH-1.5-1.2.27\r\n", server, []string{`proto="1.5"`}, []proto.FindingKind{proto.SSHVersion1}, false, true},
		{"bare lf", "SSH-2.0-dropbear_2022.83\n", server, []string{`software="dropbear_2022.83"`}, []proto.FindingKind{proto.SSHBareLF}, false, true},
		{"control chars", "SSH-2.0-evil\x1b[31m\r\n", server, []string{`software="evil\x1b[31m"`}, []proto.FindingKind{proto.SSHInvalidChars}, false, true},
		{"client speaks http", "GET / HTTP/1.1\r\n", server, nil, []proto.FindingKind{proto.SSHInvalidBanner}, true, true},
		{"no software", "SSH-2.0-\r\n", server, nil, []proto.FindingKind{proto.SSHInvalidBanner}, true, true},
		{"no dash", "SSH-2.0\r\n", server, nil, []proto.FindingKind{proto.SSHInvalidBanner}, true, true},
		{"bad version", "SSH-2.x-foo\r\n", server, nil, []proto.FindingKind{proto.SSHInvalidBanner}, true, true},
		{"too long", "SSH-2.0-" + strings.Repeat("a", 250) + "\r\n", server, nil, []proto.FindingKind{proto.SSHBannerTooLong}, true, true},
		{"too long unterminated", "SSH-2.0-" + strings.Repeat("a", 300), server, nil, []proto.FindingKind{proto.SSHBannerTooLong}, true, true},
		{"longest legal", "SSH-2.0-" + strings.Repeat("a", 245) + "\r\n", server, []string{`software="aaaa`}, nil, false, true},
		{"too many server lines", client, strings.Repeat("hello\r\n", MaxPreBannerLines+1) + server, nil, []proto.FindingKind{proto.SSHTooManyLines}, true, true},
		{"server silent", client, "", []string{`banner to_server`}, nil, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, done := run(one(tc.client), one(tc.server))
			log := r.String()
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			if !slices.Equal(r.findings, tc.kinds) || r.fatal != tc.fatal || done != tc.done {
				t.Errorf("findings %v fatal %v done %v; want %v %v %v:\n%s", r.findings, r.fatal, done, tc.kinds, tc.fatal, tc.done, log)
			}
		})
	}
}

func TestChunking(t *testing.T) {
	for _, c := range []struct{ client, server string }{
		{"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "Banner line\r\nSSH-2.0-OpenSSH_9.6\r\n"},
		{"SSH-2.0-" + strings.Repeat("b", 260), "SSH-1.5-x\n"},
	} {
		want, _ := run(one(c.client), one(c.server))
		prototest.Chunkings([]byte(c.client), 64, func(chunks [][]byte) {
			if got, _ := run(chunks, one(c.server)); got.String() != want.String() {
				t.Fatalf("client in %d chunks:\n%s\nwant\n%s", len(chunks), got, want)
			}
		})
		prototest.Chunkings([]byte(c.server), 64, func(chunks [][]byte) {
			if got, _ := run(one(c.client), chunks); got.String() != want.String() {
				t.Fatalf("server in %d chunks:\n%s\nwant\n%s", len(chunks), got, want)
			}
		})
	}
}

// FuzzSSH feeds arbitrary bytes to both directions, whole and in chunks
// derived from the input: no panic, the same events either way.
func FuzzSSH(f *testing.F) {
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), []byte("pre\r\nSSH-2.0-x\r\n"), []byte{3})
	f.Add([]byte("SSH-1.99-a b c\n"), []byte("SSH-2.0-"), []byte{0})
	f.Fuzz(func(t *testing.T, client, server, seed []byte) {
		want, wd := run([][]byte{client}, [][]byte{server})
		got, gd := run(prototest.RandomChunks(client, seed), prototest.RandomChunks(server, seed))
		if got.String() != want.String() || gd != wd {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
	})
}
