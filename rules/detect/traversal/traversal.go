// Package traversal is the path traversal and local file inclusion
// detector (rule language: detect: traversal). It decodes every layer of a
// value (rules/detect/internal/norm), resolves it as a path the way
// servers and runtimes do ('\' is '/' on Windows, Java's ";param"
// segments, PHP's NUL truncation, runs of dots on Windows) and reports a
// value that climbs above the root it starts from, names a sensitive file
// from the list below, or opens a PHP/Java stream wrapper (php://,
// file:, zip:, phar://, data://, expect://...).
package traversal

import (
	"bytes"
	"encoding/base64"
	"strings"

	"github.com/deepwall/deepwall/rules/detect/internal/norm"
	"github.com/deepwall/deepwall/rules/transform"
)

// Named limits.
const (
	maxLen      = 4096 // bytes of a value resolved (the rest is not read)
	maxSegments = 64   // path segments kept while resolving
)

// Detector holds the reusable buffers of one worker. Not safe for
// concurrent use.
type Detector struct {
	dec  norm.Decoder
	low  []byte
	b64  []byte
	segs [maxSegments][]byte
}

// New returns a detector.
func New() *Detector { return &Detector{dec: norm.Decoder{KeepBackslash: true}} }

// Match reports whether value is a traversal, a sensitive file or a
// file-inclusion wrapper; reason names which.
func (d *Detector) Match(value []byte) (hit bool, reason string) {
	if len(value) > maxLen {
		value = value[:maxLen]
	}
	if !candidate(value) {
		return false, ""
	}
	v := d.dec.Decode(value)
	d.low = transform.Lowercase.Append(d.low[:0], v)
	v = bytes.TrimSpace(d.low)
	if r := wrapper(v); r != "" {
		return true, r
	}
	if r := d.resolve(v); r != "" {
		return true, r
	}
	// A value that is base64 of a path (JHADDIX_LFI's "Li4vLi4v...").
	if len(value) >= 12 && len(value)%4 == 0 && isBase64(value) {
		n := base64.StdEncoding.DecodedLen(len(value))
		if cap(d.b64) < n {
			d.b64 = make([]byte, n)
		}
		d.b64 = d.b64[:n]
		if m, err := base64.StdEncoding.Decode(d.b64, value); err == nil {
			d.low = transform.Lowercase.Append(d.low[:0], d.b64[:m])
			if r := d.resolve(d.low); r != "" {
				return true, "base64 " + r
			}
		}
	}
	return false, ""
}

// candidate is a cheap pre-test: a path, a wrapper or an encoding of
// one needs a separator, a ':' or an escape; a long enough value may be
// base64 of one.
func candidate(b []byte) bool {
	for _, c := range b {
		switch c {
		case '/', '\\', ':', '%', '&', 0xc0, 0xc1, 0xe0:
			return true
		}
	}
	return len(b) >= 12 && len(b)%4 == 0
}

func isBase64(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// wrappers are the stream wrappers of PHP's include and Java's URL
// handlers that read local files or run code; "data:" only in PHP's
// "data://" form or carrying PHP code.
var wrappers = [...]string{
	"php://", "file:", "zip://", "zip:", "phar://", "expect://", "glob://", "compress.zlib://",
	"compress.bzip2://", "data://", "jar:file:", "jar:http", "netdoc:", "rar://", "ogg://", "ssh2.",
}

// wrapper reports the wrapper v opens.
func wrapper(v []byte) string {
	for _, w := range wrappers {
		if bytes.HasPrefix(v, []byte(w)) {
			if w == "zip:" && len(v) > 4 && !bytes.ContainsAny(v[4:], "/#") {
				continue // "zip:12345" is a postcode form field
			}
			return "wrapper " + w
		}
	}
	if bytes.HasPrefix(v, []byte("data:")) && (bytes.Contains(v, []byte("<?")) || bytes.Contains(v, []byte("base64,pd9w"))) {
		return "wrapper data: with php code"
	}
	// A wrapper after a traversal or inside an include path ("../php://").
	if i := bytes.Index(v, []byte("php://filter")); i >= 0 {
		return "wrapper php://filter"
	}
	return ""
}

// resolve walks v as a path and reports an escape above its root or a
// sensitive file.
func (d *Detector) resolve(v []byte) string {
	// PHP before 5.3.4 and C backends stop at NUL: "passwd\x00.html";
	// NULs in front are dropped by the same decoders.
	v = bytes.TrimLeft(v, "\x00")
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	if len(v) < 2 {
		return ""
	}
	abs, drive := false, false
	if v[0] == '/' || v[0] == '\\' {
		abs = true
	} else if len(v) >= 3 && v[1] == ':' && (v[2] == '/' || v[2] == '\\') && v[0] >= 'a' && v[0] <= 'z' {
		abs, drive, v = true, true, v[2:] // a Windows drive
	} else if bytes.Contains(v, []byte("://")) {
		return "" // a URL: its path is the remote server's
	}
	n, escapes := 0, 0
	for len(v) > 0 {
		var seg []byte
		i := bytes.IndexAny(v, `/\`)
		if i < 0 {
			seg, v = v, nil
		} else {
			seg, v = v[:i], v[i+1:]
		}
		if j := bytes.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j] // Java (Tomcat, Spring) drops ";params" of a segment
		}
		seg = bytes.TrimRight(seg, " ") // Windows ignores trailing spaces
		switch {
		case len(seg) == 0 || len(seg) == 1 && seg[0] == '.':
		case allDots(seg):
			// ".." and, on Windows and in dotdotpwn's lists, "...." too.
			if n > 0 {
				n--
			} else {
				escapes++
			}
		default:
			if n < maxSegments {
				d.segs[n] = seg
				n++
			}
		}
	}
	if escapes > 0 && (n > 0 || escapes > 1) {
		return "traversal above the root"
	}
	if (abs || escapes > 0) && n >= 2 && (sensitiveDir(d.segs[0]) || drive && string(d.segs[0]) != "fakepath") {
		return "absolute path to a system directory"
	}
	if f := d.sensitive(n, abs || escapes > 0); f != "" {
		return "sensitive file " + f
	}
	return ""
}

func allDots(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	for _, c := range b {
		if c != '.' {
			return false
		}
	}
	return true
}

// systemDirs are the first segments of absolute paths no web form sends:
// operating system trees on Unix and Windows (not /home, /users, /tmp,
// /opt: a file manager's "dir=/users/anna/documents" is one).
var systemDirs = [...]string{
	"etc", "proc", "sys", "dev", "root", "boot", "var", "usr", "bin", "sbin", "lib",
	"windows", "winnt", "inetpub", "xampp", "wamp", "program files", "program files (x86)", "programdata", "apache", "apache2",
	"documents and settings", "system volume information",
}

func sensitiveDir(seg []byte) bool {
	for _, s := range systemDirs {
		if string(seg) == s {
			return true
		}
	}
	return false
}

// sensitiveFiles is the maintained list of files whose reading is the
// point of a traversal: credentials, keys, configuration holding secrets,
// logs used for log poisoning, process state. An entry matches the last
// segments of the resolved path.
var sensitiveFiles = [...]string{
	"etc/passwd", "etc/shadow", "etc/group", "etc/hosts", "etc/issue", "etc/fstab", "etc/crontab", "etc/sudoers",
	"etc/master.passwd", "etc/my.cnf", "etc/php.ini", "etc/httpd.conf", "etc/nginx.conf", "etc/apache2.conf",
	"self/environ", "self/cmdline", "self/fd", "self/status", "self/maps", "self/mounts",
	"boot.ini", "win.ini", "system.ini", "system32/config/sam", "repair/sam", "unattend.xml", "sysprep.inf",
	"web-inf/web.xml", "meta-inf/manifest.mf", "web.config", "applicationhost.config",
	".htaccess", ".htpasswd", ".ssh/id_rsa", ".ssh/id_dsa", ".ssh/id_ecdsa", ".ssh/id_ed25519", ".ssh/authorized_keys", ".ssh/known_hosts",
	".bash_history", ".zsh_history", ".mysql_history", ".git/config", ".git/head", ".env", ".aws/credentials", ".docker/config.json", ".kube/config",
	"wp-config.php", "config.inc.php", "configuration.php", "localsettings.php", "settings.php", "database.yml", "secrets.yml",
	"master.passwd", ".bash_profile", ".profile", ".bashrc", "php.ini", "httpd.conf", "my.cnf", "my.ini", "access.log", "error.log", "access_log", "error_log",
}

// sensitiveByTail indexes sensitiveFiles by their last segment.
var sensitiveByTail = func() map[string][]string {
	m := map[string][]string{}
	for _, f := range sensitiveFiles {
		tail := f
		if i := strings.LastIndexByte(f, '/'); i >= 0 {
			tail = f[i+1:]
		}
		m[tail] = append(m[tail], f)
	}
	return m
}()

// sensitive reports the entry of sensitiveFiles that the n resolved
// segments end with; an entry of one segment ("php.ini") only in a path
// that is absolute, climbs or has a directory ("error.log" alone is a file
// name a form may carry).
func (d *Detector) sensitive(n int, rooted bool) string {
	if n == 0 {
		return ""
	}
	for _, f := range sensitiveByTail[string(d.segs[n-1])] {
		k := strings.Count(f, "/") + 1
		if k > n {
			continue
		}
		if k == 1 && (rooted || n >= 2) || k > 1 && matchTail(d.segs[n-k:n], f) {
			return f
		}
	}
	return ""
}

// matchTail reports whether segs joined with '/' equal f.
func matchTail(segs [][]byte, f string) bool {
	for i, s := range segs {
		if len(f) < len(s) || f[:len(s)] != string(s) {
			return false
		}
		f = f[len(s):]
		if i < len(segs)-1 {
			if len(f) == 0 || f[0] != '/' {
				return false
			}
			f = f[1:]
		}
	}
	return f == ""
}
