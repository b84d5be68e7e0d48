package dpi

import (
	"slices"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/testutil"
)

// replay adds a recorded connection (dpi/proto/*/testdata) to a capture,
// after extra client chunks if any.
func replay(path, server string, extra ...string) func(c *capture) {
	return func(c *capture) {
		v := c.tcp(cli, server).handshake()
		for _, ch := range testutil.Transcript(c.tb, path) {
			d := flow.ToServer
			if ch.ToClient {
				d = flow.ToClient
			}
			v.send(d, string(ch.Data))
		}
		for _, e := range extra {
			v.send(flow.ToServer, e)
		}
	}
}

// mysqlPacket frames a MySQL command packet (sequence 0).
func mysqlPacket(payload string) string {
	n := len(payload)
	return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0}) + payload
}

const (
	mariadbConn  = "proto/mysql/testdata/mariadb-client.txt"
	psqlConn     = "proto/pgsql/testdata/psql.txt"
	pgbenchConn  = "proto/pgsql/testdata/pgbench-prepared.txt"
	redisCLIConn = "proto/redis/testdata/redis-cli.txt"
	redisInline  = "proto/redis/testdata/inline.txt"
	mcTextConn   = "proto/memcached/testdata/nc-text.txt"
	mcBinConn    = "proto/memcached/testdata/libmemcached-binary.txt"
	mysqlSrv     = "198.18.1.1:3306"
	pgsqlSrv     = "198.18.1.1:5432"
	redisSrv     = "198.18.1.1:6379"
	mcSrv        = "198.18.1.1:11211"
	mqttPubConn  = "proto/mqtt/testdata/pub-v5.txt"
	mqttSubConn  = "proto/mqtt/testdata/sub-v311.txt"
	mqttSrv      = "198.18.1.1:1883"
)

// TestDBFields runs recorded connections of real clients and servers
// (MariaDB, PostgreSQL, Redis) through the engine with rules on the
// database fields: which commands pass, which are blocked, and the
// event's section naming the command.
func TestDBFields(t *testing.T) {
	// The mariadb connection: handshake as web to shop, CREATE TABLE,
	// INSERT, SELECT, SELECT DATABASE(), COM_INIT_DB shop, DROP TABLE.
	tests := []struct {
		name   string
		rules  string
		build  func(c *capture)
		alerts []string
		block  bool
		check  func(ev *eve.Event) bool
	}{
		{"mysql only select and insert", block("1", "sql.verb", "^(select|insert)$", ", not: true"), replay(mariadbConn, mysqlSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.MySQL != nil && ev.MySQL.Query == "CREATE TABLE t (id INT, name VARCHAR(20))" && ev.MySQL.User == "web" && ev.MySQL.Database == "shop" && ev.MySQL.Command == "query" && ev.AppProto == "mysql"
			}},
		{"mysql all allowed", block("1", "sql.verb", "^(select|insert|create|drop)$", ", not: true"), replay(mariadbConn, mysqlSrv), nil, false, nil},
		{"mysql no ddl", block("1", "sql.class", "^ddl$"), replay(mariadbConn, mysqlSrv), []string{"blocked:1"}, true, nil},
		{"mysql user", block("1", "mysql.user", "^web$"), replay(mariadbConn, mysqlSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.MySQL != nil && ev.MySQL.Command == "handshake" && ev.MySQL.User == "web"
			}},
		{"mysql database by init_db", block("1", "mysql.command", "^init_db$"), replay(mariadbConn, mysqlSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.MySQL.Command == "init_db" && ev.MySQL.Database == "shop" }},
		{"mysql user and ddl", "  - {id: 1, action: block, match: [{field: mysql.user, regex: '^web$'}, {field: sql.class, regex: '^ddl$'}]}\n",
			replay(mariadbConn, mysqlSrv), []string{"blocked:1"}, true, func(ev *eve.Event) bool { return ev.MySQL.Query == "CREATE TABLE t (id INT, name VARCHAR(20))" }},
		{"mysql other user and ddl", "  - {id: 1, action: block, match: [{field: mysql.user, regex: '^root$'}, {field: sql.class, regex: '^ddl$'}]}\n",
			replay(mariadbConn, mysqlSrv), nil, false, nil},
		{"mysql sqli", "  - {id: 1, action: block, match: {field: mysql.query, detect: sqli}}\n",
			replay(mariadbConn, mysqlSrv, mysqlPacket("\x03SELECT * FROM t WHERE name = '' OR '1'='1'")), []string{"blocked:1"}, true, nil},
		{"mysql drop_db command", block("1", "sql.class", "^ddl$"), func(c *capture) {
			chunks := testutil.Transcript(c.tb, mariadbConn)
			v := c.tcp(cli, mysqlSrv).handshake()
			v.send(flow.ToClient, string(chunks[0].Data)).send(flow.ToServer, string(chunks[1].Data)).send(flow.ToClient, string(chunks[2].Data))
			v.send(flow.ToServer, mysqlPacket("\x06shop"))
		}, []string{"blocked:1"}, true, func(ev *eve.Event) bool { return ev.MySQL.Command == "drop_db" }},
		{"pgsql stacked queries", block("1", "sql.class", "^multi$"), replay(psqlConn, pgsqlSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.PgSQL != nil && ev.PgSQL.User == "postgres" && ev.PgSQL.Database == "postgres" && ev.PgSQL.Command == "query" && ev.AppProto == "postgresql"
			}},
		{"pgsql parse", block("1", "pgsql.query", "AS one"), replay(pgbenchConn, pgsqlSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.PgSQL.Command == "parse" && ev.PgSQL.Query == "SELECT 1 AS one;" }},
		{"pgsql select allowed", block("1", "sql.verb", "^select$", ", not: true"), replay(pgbenchConn, pgsqlSrv), nil, false, nil},
		{"pgsql database", block("1", "pgsql.database", "^postgres$"), replay(psqlConn, pgsqlSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.PgSQL.Command == "startup" }},
		{"redis command list", "  - {id: 1, action: block, app_proto: redis, match: {field: redis.command, regex: '^(get|set|command|ping)$', not: true}}\n",
			replay(redisCLIConn, redisSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.Redis != nil && ev.Redis.Command == "mset" && ev.Redis.Key == "a" && ev.AppProto == "redis"
			}},
		{"redis key", block("1", "redis.key", "^user:"), replay(redisCLIConn, redisSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.Redis.Command == "set" && ev.Redis.Key == "user:1" }},
		{"redis flushall", block("1", "redis.command", "^(flushall|flushdb|config)$"), replay(redisCLIConn, redisSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.Redis.Command == "config" }},
		{"redis alert per command", "  - {id: 1, action: alert, match: {field: redis.command, regex: '^(get|set)$'}}\n", replay(redisCLIConn, redisSrv),
			[]string{"allowed:1", "allowed:1"}, false, nil},
		{"memcached command list", "  - {id: 1, action: block, app_proto: memcached, match: {field: memcached.command, regex: '^(get|gets|set|add|append|prepend|cas|incr|decr)$', not: true}}\n",
			replay(mcTextConn, mcSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.Memcached != nil && ev.Memcached.Command == "touch" && ev.Memcached.Key == "user:1" && ev.AppProto == "memcached"
			}},
		{"memcached key", block("1", "memcached.key", "^counter$"), replay(mcTextConn, mcSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.Memcached.Command == "add" && ev.Memcached.Key == "counter" }},
		{"memcached value not a command", block("1", "memcached.command", "^(alice|hi)$"), replay(mcTextConn, mcSrv), nil, false, nil},
		{"memcached binary flush", block("1", "memcached.command", "^flush_all$"), replay(mcBinConn, mcSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.Memcached.Command == "flush_all" && ev.AppProto == "memcached" }},
		{"mqtt publish topic", block("1", "mqtt.topic", "^sensors/room2/"), replay(mqttPubConn, mqttSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.MQTT != nil && *ev.MQTT == eve.MQTTInfo{ClientID: "pub-5", User: "bob", Command: "publish", Topic: "sensors/room2/hum"} && ev.AppProto == "mqtt"
			}},
		{"mqtt client may publish only", "  - {id: 1, action: block, match: [{field: mqtt.client_id, regex: '^pub-'}, {field: mqtt.command, regex: '^(connect|publish|pubrel|disconnect)$', not: true}]}\n",
			replay(mqttPubConn, mqttSrv), nil, false, nil},
		{"mqtt subscription filter", block("1", "mqtt.topic", "^\\$SYS/"), replay(mqttSubConn, mqttSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool {
				return ev.MQTT.Command == "subscribe" && ev.MQTT.Topic == "sensors/#" && ev.MQTT.User == "carol" && ev.MQTT.ClientID == "sub-311"
			}},
		{"mqtt user", block("1", "mqtt.user", "^carol$"), replay(mqttSubConn, mqttSrv), []string{"blocked:1"}, true,
			func(ev *eve.Event) bool { return ev.MQTT.Command == "connect" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, evs, h := run(t, "rules:\n"+tc.rules, tc.build)
			if !slices.Equal(o.alerts, tc.alerts) || o.blocked != tc.block {
				dumpEvents(t, evs)
				t.Fatalf("alerts %v blocked %v, want %v %v", o.alerts, o.blocked, tc.alerts, tc.block)
			}
			if tc.check != nil {
				for _, ev := range evs {
					if ev.EventType == eve.EventAlert && !tc.check(ev) {
						dumpEvents(t, evs)
						t.Fatalf("event section: %+v %+v %+v %+v %+v", ev.MySQL, ev.PgSQL, ev.Redis, ev.Memcached, ev.MQTT)
					}
				}
			}
			h.e.Flush()
			if s := h.e.Stats(); s.OpenStreams != 0 || s.Flows != 0 {
				t.Errorf("after flush: %d streams, %d flows", s.OpenStreams, s.Flows)
			}
		})
	}
}

// TestDBAllocs: steady-state commands of inspected MySQL, PostgreSQL,
// Redis, memcached and MQTT connections (queries classified, keys matched) allocate nothing.
func TestDBAllocs(t *testing.T) {
	yaml := "rules:\n" +
		block("1", "sql.verb", "^(select|insert)$", ", not: true") +
		block("2", "sql.class", "^ddl$") +
		block("3", "mysql.user", "^root$") +
		block("4", "pgsql.query", "pg_sleep") +
		"  - {id: 5, action: block, app_proto: redis, match: {field: redis.command, regex: '^(get|set|command|ping|mset|del|eval)$', not: true}}\n" +
		block("6", "redis.key", "^secret:") +
		"  - {id: 7, action: block, app_proto: memcached, match: {field: memcached.command, regex: '^(get|set)$', not: true}}\n" +
		block("8", "memcached.key", "^secret:") +
		"  - {id: 9, action: block, app_proto: mqtt, match: {field: mqtt.topic, regex: '^sensors/', not: true}}\n"
	tests := []struct {
		name, path, server string
		setup              int // chunks of the recording sent first
		command, deny      func(v *conv)
	}{
		{"mysql", mariadbConn, mysqlSrv, 3, func(v *conv) {
			v.send(flow.ToServer, mysqlPacket("\x03SELECT name FROM t WHERE id = 42; INSERT INTO t VALUES (1)"))
			v.send(flow.ToClient, "\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00")
		}, func(v *conv) { v.send(flow.ToServer, mysqlPacket("\x03DROP TABLE t")) }},
		{"pgsql", psqlConn, pgsqlSrv, 4, func(v *conv) {
			q := "SELECT name FROM t WHERE id = 42\x00"
			v.send(flow.ToServer, "Q\x00\x00\x00"+string(rune(4+len(q)))+q)
			v.send(flow.ToClient, "Z\x00\x00\x00\x05I")
		}, func(v *conv) { v.send(flow.ToServer, "Q\x00\x00\x00\x17SELECT pg_sleep(9)\x00") }},
		{"redis", redisCLIConn, redisSrv, 0, func(v *conv) {
			v.send(flow.ToServer, "*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$5\r\nalice\r\n")
			v.send(flow.ToClient, "+OK\r\n")
		}, func(v *conv) { v.send(flow.ToServer, "*2\r\n$3\r\nGET\r\n$8\r\nsecret:1\r\n") }},
		{"memcached", mcTextConn, mcSrv, 0, func(v *conv) {
			v.send(flow.ToServer, "set user:1 0 0 5\r\nalice\r\nget user:1 user:2\r\n")
			v.send(flow.ToClient, "STORED\r\nVALUE user:1 0 5\r\nalice\r\nEND\r\n")
		}, func(v *conv) { v.send(flow.ToServer, "get secret:1\r\n") }},
		{"mqtt", mqttPubConn, mqttSrv, 2, func(v *conv) {
			v.send(flow.ToServer, "\x32\x18\x00\x11sensors/room2/hum\x00\x02"+"\x00"+"40")
			v.send(flow.ToClient, "\x40\x02\x00\x02")
		}, func(v *conv) { v.send(flow.ToServer, "\x30\x0a\x00\x06secret"+"\x00"+"x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, yaml), Config{}) // the engine owns its rules
			c := newCapture(t)
			v := c.tcp(cli, tt.server).handshake()
			// The connection's start (greeting, login, startup) as recorded.
			for _, ch := range testutil.Transcript(t, tt.path)[:tt.setup] {
				d := flow.ToServer
				if ch.ToClient {
					d = flow.ToClient
				}
				v.send(d, string(ch.Data))
			}
			for range 4 {
				tt.command(v)
			}
			h.run(c)
			const runs = 50
			var batches [][]capFrame
			for range runs + 1 {
				n := len(c.frames)
				tt.command(v)
				batches = append(batches, c.frames[n:])
			}
			next := 0
			var fr dataplane.Frame
			allocs := testing.AllocsPerRun(runs, func() {
				for i := range batches[next] {
					f := &batches[next][i]
					fr = dataplane.Frame{Data: f.data, Timestamp: f.ts, Ingress: f.ingress}
					if vd := h.e.Inspect(0, &fr); vd.Action != dataplane.Forward {
						t.Fatalf("frame %d: %v", i, vd)
					}
				}
				next++
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per command", allocs)
			}
			if s := h.e.Stats(); s.Alerts != 0 || s.Flows != 1 {
				t.Errorf("stats %+v", s)
			}
			// The commands were inspected: a denied one is blocked.
			n := len(c.frames)
			tt.deny(v)
			f := &c.frames[n]
			fr = dataplane.Frame{Data: f.data, Timestamp: f.ts, Ingress: f.ingress}
			if vd := h.e.Inspect(0, &fr); vd.Action != dataplane.Drop {
				t.Errorf("denied command: %v", vd)
			}
		})
	}
}
