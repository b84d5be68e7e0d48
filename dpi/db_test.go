package dpi

import (
	"slices"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
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
	mysqlSrv     = "198.18.1.1:3306"
	pgsqlSrv     = "198.18.1.1:5432"
	redisSrv     = "198.18.1.1:6379"
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
						t.Fatalf("event section: %+v %+v %+v", ev.MySQL, ev.PgSQL, ev.Redis)
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
