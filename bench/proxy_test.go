package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// The proxy systems: what users put in front of a service today. nginx
// runs in the fw namespace as a reverse proxy on the bridge's own address
// (proxyIP), with keep-alive connections to the server; the client sends
// its requests to proxyIP instead of the server. With modsec, nginx's
// ModSecurity v3 module (Debian's libnginx-mod-http-modsecurity) runs
// Debian's OWASP CRS at paranoia level 1, with request and response body
// inspection on.

// proxyIP is the reverse proxy's address, on fw's bridge.
var proxyIP = netip.MustParseAddr("198.18.0.3")

// ModSecurity's module as Debian installs it.
const modsecModule = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"

// proxyTools are what the proxy systems need, with the packages that
// install them.
const proxyHint = "apt-get install nginx-light libnginx-mod-http-modsecurity modsecurity-crs (scripts/dev.sh does)"

// startProxy configures and starts nginx in e's fw namespace, stopped at
// cleanup. Its errors name nginx's own message.
func startProxy(tb testing.TB, e *sysEnv) {
	tb.Helper()
	testnet.RequireTools(tb, proxyHint, "nginx")
	if e.spec.modsec {
		if _, err := os.Stat(modsecModule); err != nil {
			tb.Fatalf("%s: %v (%s)", e.spec.name, err, proxyHint)
		}
	}
	nl := e.topo.FW.Netlink(tb)
	br, err := nl.LinkByName(testnet.BridgeIf)
	if err != nil {
		tb.Fatal(err)
	}
	if err := nl.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: proxyIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		tb.Fatalf("fw: add %s: %v", proxyIP, err)
	}
	dir := tb.TempDir()
	var modsec, load string
	if e.spec.modsec {
		load = "load_module " + modsecModule + ";"
		modsec = "modsecurity on;\n\t\tmodsecurity_rules_file " + writeModsecRules(tb, dir) + ";"
	}
	conf := fmt.Sprintf(`%s
daemon off;
master_process on;
worker_processes 2;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	upstream backend {
		server %[3]s;
		keepalive 128;
	}
	server {
		listen %[4]s;
		%[5]s
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering on;
		}
	}
}
`, load, dir, netip.AddrPortFrom(testnet.ServerIP, httpPort), netip.AddrPortFrom(proxyIP, httpPort), modsec)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, err := e.topo.FW.Run(exec.Command("nginx", "-t", "-c", path, "-e", filepath.Join(dir, "error.log"))); err != nil {
		tb.Fatalf("%s: nginx -t: %v: %s", e.spec.name, err, out)
	}
	cmd := exec.Command("nginx", "-c", path, "-e", filepath.Join(dir, "error.log"))
	e.topo.FW.Start(tb, cmd)
	// Start's cleanup kills the master only; its workers would live on.
	// Cleanups run last-in first-out: this one stops them all first.
	tb.Cleanup(func() {
		_, _ = e.topo.FW.Run(exec.Command("nginx", "-c", path, "-e", filepath.Join(dir, "error.log"), "-s", "stop"))
		for range 50 {
			if _, err := os.Stat(filepath.Join(dir, "nginx.pid")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if !waitDial(e, netip.AddrPortFrom(proxyIP, httpPort), 30*time.Second) {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		tb.Fatalf("%s: nginx does not accept on %s: %s", e.spec.name, proxyIP, log)
	}
}

// waitDial waits until addr accepts a connection from e's client.
func waitDial(e *sysEnv, addr netip.AddrPort, d time.Duration) bool {
	return testutil.WaitFor(d, func() bool {
		return e.topo.Client.Do(func() error {
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})
}

// Debian's CRS (modsecurity-crs, v3.3): Debian's libmodsecurity 3.0.9
// cannot parse CRS v4 (its 949 rules use a macro as an operator argument,
// which ModSecurity reads from 3.0.13 on).
const (
	crsSetup = "/etc/modsecurity/crs/crs-setup.conf"
	crsRules = "/usr/share/modsecurity-crs/rules"
)

// writeModsecRules writes ModSecurity's main rules file into dir: the
// engine settings of ModSecurity's recommended configuration that matter
// for a WAF in front of a service (rule engine on, request and response
// bodies inspected), then Debian's CRS setup and rules.
func writeModsecRules(tb testing.TB, dir string) string {
	tb.Helper()
	for _, p := range []string{crsSetup, crsRules} {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("%v (apt-get install modsecurity-crs; scripts/dev.sh does)", err)
		}
	}
	main := fmt.Sprintf(`SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecTmpDir %[1]s
SecDataDir %[1]s
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
Include %[2]s
Include %[3]s/*.conf
`, dir, crsSetup, crsRules)
	path := filepath.Join(dir, "modsec.conf")
	if err := os.WriteFile(path, []byte(main), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
