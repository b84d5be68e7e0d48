package agent_test

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/testnet"
)

// dbRules: the web tier may only SELECT and INSERT (MariaDB, PostgreSQL),
// only GET, SET and PING Redis (plus what redis-cli sends first), only
// get, set and quit memcached, and no MQTT topic under admin/.
const dbRules = `rules:
  - {id: 8101, action: block, app_proto: redis, match: {field: redis.command, regex: '^(get|set|ping|command|hello)$', not: true}}
  - {id: 8102, action: block, match: {field: sql.verb, regex: '^(select|insert)$', not: true}}
  - {id: 8103, action: block, app_proto: memcached, match: {field: memcached.command, regex: '^(get|set|quit)$', not: true}}
  - {id: 8104, action: block, match: {field: mqtt.topic, regex: '^admin/'}}
`

// TestPrivilegedAgentDatabases: real servers from Debian in the server
// namespace (redis-server, mariadbd, postgres, memcached, mosquitto),
// driven by their own clients (redis-cli, mariadb, psql, libmemcached's
// memccp, memccat and memcflush in the text and the binary protocol,
// mosquitto_pub and mosquitto_sub) through the live inline path with
// rules per command: allowed commands are answered, denied ones are
// blocked — the connection reset, which each client reports as a lost
// connection — with an event naming the command.
func TestPrivilegedAgentDatabases(t *testing.T) { forModes(t, testAgentDatabases) }

func testAgentDatabases(t *testing.T, m agentMode) {
	testnet.RequireTools(t, "apt-get install redis-server redis-tools mariadb-server mariadb-client postgresql memcached libmemcached-tools mosquitto mosquitto-clients",
		"redis-server", "redis-cli", "mariadbd", "mariadb-install-db", "mariadb", "psql", "memcached", "memccp", "memccat", "memcflush",
		"mosquitto", "mosquitto_pub", "mosquitto_sub")
	topo := m.topology(t)
	ip := testnet.ServerIP.String()
	startRedis(t, topo, ip)
	startMariaDB(t, topo, ip)
	startPostgres(t, topo, ip)
	startMemcached(t, topo, ip)
	startMosquitto(t, topo, ip)
	dir := t.TempDir()
	// memccp stores a file under its base name.
	greeting := filepath.Join(dir, "greeting")
	if err := os.WriteFile(greeting, []byte("hello memcached\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mc := "--servers=" + ip + ":11211"
	a := startAgent(t, topo, dir, "--rules", agent.WriteFile(t, dir, "db.yaml", dbRules))
	t.Cleanup(func() { a.stop(t) })

	client := func(name string, args ...string) (string, error) {
		cmd := exec.Command("timeout", append([]string{"10", name}, args...)...)
		out, err := topo.Client.Run(cmd)
		return string(out), err
	}
	tests := []struct {
		name        string
		cmd         []string
		allowed     bool
		want        string // in the output of an allowed command
		app, denied string // the blocked command's app_proto and command in its event
		// silent: the client does not report the reset (libmemcached's
		// binary flush ignores it); a later case shows the command did
		// not run.
		silent bool
	}{
		{"redis set", []string{"redis-cli", "-h", ip, "SET", "k", "v"}, true, "OK", "", "", false},
		{"redis get", []string{"redis-cli", "-h", ip, "GET", "k"}, true, "v", "", "", false},
		{"redis flushall", []string{"redis-cli", "-h", ip, "FLUSHALL"}, false, "", "redis", "flushall", false},
		{"mariadb select", []string{"mariadb", "--no-defaults", "-h", ip, "-uweb", "-ppw", "shop", "-N", "-e", "SELECT name FROM t"}, true, "seed", "", "", false},
		{"mariadb insert", []string{"mariadb", "--no-defaults", "-h", ip, "-uweb", "-ppw", "shop", "-e", "INSERT INTO t VALUES ('x')"}, true, "", "", "", false},
		{"mariadb drop", []string{"mariadb", "--no-defaults", "-h", ip, "-uweb", "-ppw", "shop", "-e", "DROP TABLE t"}, false, "", "mysql", "query", false},
		{"psql select", []string{"psql", "-h", ip, "-U", "postgres", "-d", "postgres", "-tA", "-c", "SELECT name FROM t"}, true, "seed", "", "", false},
		{"psql stacked", []string{"psql", "-h", ip, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1; DELETE FROM t"}, false, "", "postgresql", "query", false},
		{"memcached set", []string{"memccp", mc, greeting}, true, "", "", "", false},
		{"memcached get", []string{"memccat", mc, "greeting"}, true, "hello memcached", "", "", false},
		{"memcached binary get", []string{"memccat", "--binary", mc, "greeting"}, true, "hello memcached", "", "", false},
		{"memcached flush_all", []string{"memcflush", mc}, false, "", "memcached", "flush_all", false},
		{"memcached binary flush", []string{"memcflush", "--binary", mc}, false, "", "memcached", "flush_all", true},
		{"memcached get after the flushes", []string{"memccat", mc, "greeting"}, true, "hello memcached", "", "", false},
		// QoS 1: mosquitto_pub waits for the PUBACK, so a reset fails it
		// (mosquitto_sub, reset, would connect again until the timeout:
		// TestDBFields blocks a subscription).
		{"mqtt publish", []string{"mosquitto_pub", "-h", ip, "-q", "1", "-i", "web-1", "-t", "sensors/temp", "-m", "21"}, true, "", "", "", false},
		{"mqtt subscribe", []string{"mosquitto_sub", "-h", ip, "-V", "mqttv5", "-t", "sensors/#", "-E"}, true, "", "", "", false},
		{"mqtt publish denied", []string{"mosquitto_pub", "-h", ip, "-q", "1", "-i", "web-1", "-t", "admin/reboot", "-m", "now"}, false, "", "mqtt", "publish", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := client(tt.cmd[0], tt.cmd[1:]...)
			if tt.allowed {
				if err != nil || !strings.Contains(out, tt.want) {
					t.Fatalf("%v: %v\n%s", tt.cmd, err, out)
				}
				return
			}
			t.Logf("%s sees: %s (%v)", tt.cmd[0], strings.TrimSpace(out), err)
			if err == nil && !strings.Contains(out, "rror") && !tt.silent {
				t.Fatalf("%v was answered: %s", tt.cmd, out)
			}
			a.waitEvents(t, "a blocking alert naming "+tt.denied, func(evs []eve.Event) bool {
				for _, ev := range evs {
					if ev.Alert == nil || ev.Alert.Action != "blocked" || ev.AppProto != tt.app {
						continue
					}
					for _, s := range []*eve.DBInfo{ev.MySQL, ev.PgSQL, ev.Redis, ev.Memcached} {
						if s != nil && s.Command == tt.denied {
							return true
						}
					}
					if ev.MQTT != nil && ev.MQTT.Command == tt.denied && strings.HasPrefix(ev.MQTT.Topic, "admin/") {
						return true
					}
				}
				return false
			})
		})
	}
}

func startMemcached(t *testing.T, topo *testnet.Topology, ip string) {
	t.Helper()
	topo.Server.Start(t, exec.Command("memcached", "-u", "root", "-l", ip, "-p", "11211", "-U", "0", "-m", "16"))
	waitListening(t, topo, 11211)
}

// startMosquitto runs mosquitto on ip:1883 with anonymous clients allowed.
func startMosquitto(t *testing.T, topo *testnet.Topology, ip string) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener 1883 "+ip+"\nallow_anonymous true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	topo.Server.Start(t, exec.Command("mosquitto", "-c", conf))
	waitListening(t, topo, 1883)
}

func startRedis(t *testing.T, topo *testnet.Topology, ip string) {
	t.Helper()
	topo.Server.Start(t, exec.Command("redis-server", "--bind", ip, "--port", "6379", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", t.TempDir()))
	waitListening(t, topo, 6379)
}

// startMariaDB initialises a data directory, starts mariadbd as root on
// ip:3306 and creates the web user and shop.t through the unix socket
// (which the firewall does not see).
func startMariaDB(t *testing.T, topo *testnet.Topology, ip string) {
	t.Helper()
	dir := t.TempDir()
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	if out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve").CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	topo.Server.Start(t, exec.Command("mariadbd", "--no-defaults", "--datadir="+data, "--socket="+sock, "--user=root",
		"--bind-address="+ip, "--port=3306", "--skip-log-bin", "--skip-name-resolve", "--pid-file="+filepath.Join(dir, "pid"),
		"--innodb-buffer-pool-size=16M", "--log-error="+filepath.Join(dir, "err.log")))
	waitListening(t, topo, 3306)
	sql := "CREATE DATABASE shop; CREATE USER 'web'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON shop.* TO 'web'@'%';" +
		"CREATE TABLE shop.t (name VARCHAR(20)); INSERT INTO shop.t VALUES ('seed');"
	if out, err := topo.Server.Run(exec.Command("mariadb", "--no-defaults", "-S", sock, "-uroot", "-e", sql)); err != nil {
		t.Fatalf("mariadb setup: %v\n%s", err, out)
	}
}

// startPostgres initialises a cluster as the postgres user (PostgreSQL
// refuses root) with trust authentication, starts it on ip:5432 and
// creates t.
func startPostgres(t *testing.T, topo *testnet.Topology, ip string) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "deepwall-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	asPostgres := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = dir
		return cmd
	}
	bin := "/usr/lib/postgresql/15/bin"
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		bin = filepath.Dir(m[len(m)-1])
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(exec.Command(bin+"/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := "host all all 0.0.0.0/0 trust\nlocal all all trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	topo.Server.Start(t, asPostgres(exec.Command(bin+"/postgres", "-D", data, "-c", "listen_addresses="+ip, "-p", "5432",
		"-k", dir, "-c", "fsync=off", "-c", "ssl=off")))
	waitListening(t, topo, 5432)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := topo.Server.Run(exec.Command("psql", "-h", dir, "-U", "postgres", "-d", "postgres", "-c",
			"CREATE TABLE t (name text); INSERT INTO t VALUES ('seed')"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres setup: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
