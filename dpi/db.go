package dpi

import (
	"unsafe"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/memcached"
	"github.com/deepwall/deepwall/dpi/proto/mqtt"
	"github.com/deepwall/deepwall/dpi/proto/mysql"
	"github.com/deepwall/deepwall/dpi/proto/pgsql"
	"github.com/deepwall/deepwall/dpi/proto/redis"
	"github.com/deepwall/deepwall/dpi/proto/sql"
	"github.com/deepwall/deepwall/rules"

	"github.com/deepwall/deepwall/ctl/eve"
)

// Bounds on what a database flow keeps for events.
const (
	// maxDBName bounds the user and database names (and the MQTT client
	// id) kept per flow.
	maxDBName = 256
	// maxEventQuery bounds the query (or Redis or memcached key) an
	// event shows.
	maxEventQuery = 1024
)

// eventText is b as an event carries it: bounded, digit runs masked.
func eventText(b []byte) string { return scrub(b[:min(len(b), maxEventQuery)]) }

// dbConn is a database or cache flow's state for rules and events: the
// connection's user and database (copies), and while a command is
// inspected, the command (pointing into the parser's buffers).
type dbConn struct {
	user, database []byte
	client         []byte // MQTT client id (a copy)
	command        string // mysql.command, or "query"/"parse" for PostgreSQL
	name           []byte // command name as sent (Redis, Memcached), valid during the command
	query          []byte // valid during the command
	key            []byte // first Redis or memcached key, valid during the command
	tls            string // "ssl" or "gss" when the connection switched to encryption
}

func (c *dbConn) reset() {
	c.user, c.database, c.client = c.user[:0], c.database[:0], c.client[:0]
	c.command, c.name, c.query, c.key, c.tls = "", nil, nil, nil, ""
}

// dbSinks adapt the worker to the database parsers' sinks (whose method
// names would clash on the worker itself).
type (
	mysqlSink     struct{ w *worker }
	pgsqlSink     struct{ w *worker }
	redisSink     struct{ w *worker }
	memcachedSink struct{ w *worker }
	mqttSink      struct{ w *worker }
)

// dbParser is a database or cache protocol's parser as the engine drives
// it: fed both directions in order, told when one ends.
type dbParser interface {
	// Feed parses an in-order chunk and reports whether the parser is
	// done (the connection is encrypted, compressed or lost).
	Feed(dir proto.Dir, b []byte) bool
	Close(dir proto.Dir)
}

// dbProto is how the engine runs one database protocol: a new protocol
// is one entry of dbProtos.
type dbProto struct {
	// start readies the flow's parser of the protocol for a new
	// connection: p, the one the flow context kept (nil at first).
	start func(w *worker, p dbParser) dbParser
	// section puts the flow's EVE section into the event.
	section func(ev *eve.Event, c *dbConn)
}

// dbProtos are the database protocols the engine parses.
var dbProtos = [proto.NumProtocols]dbProto{
	proto.MySQL: dbEntry[mysql.Parser](func(w *worker) mysql.Sink { return mysqlSink{w} },
		func(ev *eve.Event, c *dbConn) { ev.MySQL = c.section() }),
	proto.PostgreSQL: dbEntry[pgsql.Parser](func(w *worker) pgsql.Sink { return pgsqlSink{w} },
		func(ev *eve.Event, c *dbConn) { ev.PgSQL = c.section() }),
	proto.Redis: dbEntry[redis.Parser](func(w *worker) redis.Sink { return redisSink{w} },
		func(ev *eve.Event, c *dbConn) { ev.Redis = c.section() }),
	proto.Memcached: dbEntry[memcached.Parser](func(w *worker) memcached.Sink { return memcachedSink{w} },
		func(ev *eve.Event, c *dbConn) { ev.Memcached = c.section() }),
	proto.MQTT: dbEntry[mqtt.Parser](func(w *worker) mqtt.Sink { return mqttSink{w} },
		func(ev *eve.Event, c *dbConn) { ev.MQTT = c.mqttSection() }),
}

// dbEntry is the dbProto of parser type T, reset with the sink the
// worker gives it. A flow context's parser outlives the flow (Reset
// keeps its buffers); a new one is the zero T reset.
func dbEntry[T any, P interface {
	*T
	dbParser
	Reset(S)
}, S any](sink func(*worker) S, section func(*eve.Event, *dbConn)) dbProto {
	return dbProto{
		start: func(w *worker, p dbParser) dbParser {
			q, _ := p.(P)
			if q == nil {
				q = new(T)
			}
			q.Reset(sink(w))
			return q
		},
		section: section,
	}
}

// isDB reports whether the engine parses p as a database protocol.
func isDB(p proto.Protocol) bool { return p < proto.NumProtocols && dbProtos[p].start != nil }

// startDB starts the parser of database protocol p for the current flow
// (identified calls it when a rule uses the protocol's fields).
func (w *worker) startDB(ctx *flowCtx, p proto.Protocol) {
	ctx.db.reset()
	ctx.dbParsers[p] = dbProtos[p].start(w, ctx.dbParsers[p])
	ctx.dbCur = ctx.dbParsers[p]
	ctx.parser = parserDB
}

// feedDB gives an in-order chunk to the flow's database parser; once the
// parser is done (the connection is encrypted or compressed) only raw
// payload rules can still need the flow.
func (w *worker) feedDB(ctx *flowCtx, d flow.Dir, b []byte) {
	if ctx.dbCur.Feed(proto.Dir(d), b) && !w.stopped() && !w.rs.Needs(w.cst.app, ctx.rflow, true) {
		w.allowFinal(0)
	}
}

// dbCommand starts the inspection of one command (or handshake): its own
// scope, in which the connection's user and database are evaluated again
// so that a rule may combine them with the command.
func (w *worker) dbCommand(user, database rules.FieldKind) *scope {
	ctx := w.cctx
	sc := &ctx.msg
	sc.reset(nil, nil)
	w.single(user, ctx.db.user, sc, flow.ToServer)
	w.single(database, ctx.db.database, sc, flow.ToServer)
	return sc
}

// dbDone decides the command's hits and forgets the command.
func (w *worker) dbDone(sc *scope) {
	w.settle(sc, flow.ToServer)
	db := &w.cctx.db
	db.command, db.name, db.query, db.key = "", nil, nil, nil
}

// sqlQuery evaluates a query's text and its statements (sql.verb,
// sql.class).
func (w *worker) sqlQuery(k rules.FieldKind, q []byte, sc *scope) {
	w.single(k, q, sc, flow.ToServer)
	fv, fc := w.rs.Block[rules.FieldSQLVerb], w.rs.Block[rules.FieldSQLClass]
	if !fv.Used() && !fc.Used() || w.stopped() {
		return
	}
	sq := &w.sqlq
	sq.Classify(q)
	for _, st := range sq.Statements {
		if len(st.Verb) > 0 {
			w.scanValue(fv, nil, st.Verb, sc, flow.ToServer)
		}
		w.scanValue(fc, nil, str(st.Class.String()), sc, flow.ToServer)
	}
	n := len(sq.Statements)
	if sq.Multi() {
		w.scanValue(fc, nil, str("multi"), sc, flow.ToServer)
		n++
	}
	w.counts(fv, len(sq.Statements), nil, sc, flow.ToServer)
	w.counts(fc, n, nil, sc, flow.ToServer)
}

// sqlStatement evaluates sql.verb and sql.class for a command that is a
// statement of its own (MySQL's COM_CREATE_DB and COM_DROP_DB).
func (w *worker) sqlStatement(verb string, class sql.Class, sc *scope) {
	w.single(rules.FieldSQLVerb, str(verb), sc, flow.ToServer)
	w.single(rules.FieldSQLClass, str(class.String()), sc, flow.ToServer)
}

// str returns a constant string's bytes without copying (never written).
func str(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// dbFinding counts a database parser's finding. A fatal one means the
// parser lost the protocol: the flow's later commands could not be
// inspected, so it is blocked (as HTTP does), unless the flow was picked
// up mid-stream.
func (w *worker) dbFinding(f proto.Finding) {
	w.st.findings++
	if !f.Fatal || w.stopped() || w.cctx == nil {
		return
	}
	if w.cur.Flags&flow.FlagMidstream != 0 || w.cst.dir[f.Dir&1].Midstream() {
		w.cctx.parser = parserNone
		return
	}
	reason := f.Kind.String()
	w.dropProto(reason, f.Dir)
	w.blockFlow(0, reason)
}

// Handshake implements mysql.Sink.
func (s mysqlSink) Handshake(h *mysql.Handshake) {
	w := s.w
	if w.stopped() {
		return
	}
	db := &w.cctx.db
	if h.TLS {
		db.tls = "ssl"
		return
	}
	db.user = appendBounded(db.user[:0], h.User, maxDBName)
	db.database = appendBounded(db.database[:0], h.Database, maxDBName)
	db.command = "handshake"
	w.dbDone(w.dbCommand(rules.FieldMySQLUser, rules.FieldMySQLDatabase))
}

// Command implements mysql.Sink.
func (s mysqlSink) Command(c *mysql.Command) {
	w := s.w
	if w.stopped() {
		return
	}
	db := &w.cctx.db
	switch c.Code {
	case mysql.ComInitDB:
		db.database = appendBounded(db.database[:0], c.Database, maxDBName)
	case mysql.ComChangeUser:
		db.user = appendBounded(db.user[:0], c.User, maxDBName)
		db.database = appendBounded(db.database[:0], c.Database, maxDBName)
	}
	db.command, db.query = c.Name(), c.Query
	sc := w.dbCommand(rules.FieldMySQLUser, rules.FieldMySQLDatabase)
	w.single(rules.FieldMySQLCommand, str(db.command), sc, flow.ToServer)
	switch c.Code {
	case mysql.ComQuery, mysql.ComStmtPrepare:
		w.sqlQuery(rules.FieldMySQLQuery, c.Query, sc)
	case mysql.ComCreateDB:
		w.sqlStatement("create", sql.ClassDDL, sc)
	case mysql.ComDropDB:
		w.sqlStatement("drop", sql.ClassDDL, sc)
	}
	w.dbDone(sc)
}

// Finding implements mysql.Sink.
func (s mysqlSink) Finding(f proto.Finding) { s.w.dbFinding(f) }

// Startup implements pgsql.Sink.
func (s pgsqlSink) Startup(st *pgsql.Startup) {
	w := s.w
	if w.stopped() {
		return
	}
	db := &w.cctx.db
	db.user = appendBounded(db.user[:0], st.User, maxDBName)
	db.database = appendBounded(db.database[:0], st.Database, maxDBName)
	db.command = "startup"
	w.dbDone(w.dbCommand(rules.FieldPgSQLUser, rules.FieldPgSQLDatabase))
}

// Encrypted implements pgsql.Sink.
func (s pgsqlSink) Encrypted(kind string) { s.w.cctx.db.tls = kind }

// Query implements pgsql.Sink.
func (s pgsqlSink) Query(q *pgsql.Query) {
	w := s.w
	if w.stopped() {
		return
	}
	db := &w.cctx.db
	db.command, db.query = "query", q.Text
	if q.Type == 'P' {
		db.command = "parse"
	}
	sc := w.dbCommand(rules.FieldPgSQLUser, rules.FieldPgSQLDatabase)
	w.sqlQuery(rules.FieldPgSQLQuery, q.Text, sc)
	w.dbDone(sc)
}

// Finding implements pgsql.Sink.
func (s pgsqlSink) Finding(f proto.Finding) { s.w.dbFinding(f) }

// Command implements redis.Sink.
func (s redisSink) Command(c *redis.Command) {
	s.w.keyedCommand(rules.FieldRedisCommand, rules.FieldRedisKey, c.Name, c.Keys)
}

// Finding implements redis.Sink.
func (s redisSink) Finding(f proto.Finding) { s.w.dbFinding(f) }

// Command implements memcached.Sink.
func (s memcachedSink) Command(c *memcached.Command) {
	s.w.keyedCommand(rules.FieldMemcachedCommand, rules.FieldMemcachedKey, c.Name, c.Keys)
}

// Finding implements memcached.Sink.
func (s memcachedSink) Finding(f proto.Finding) { s.w.dbFinding(f) }

// Packet implements mqtt.Sink.
func (s mqttSink) Packet(p *mqtt.Packet) {
	w := s.w
	if w.stopped() {
		return
	}
	db := &w.cctx.db
	if p.Type == mqtt.Connect {
		db.user = appendBounded(db.user[:0], p.User, maxDBName)
		db.client = appendBounded(db.client[:0], p.ClientID, maxDBName)
	}
	sc := &w.cctx.msg
	sc.reset(nil, nil)
	w.single(rules.FieldMQTTClientID, db.client, sc, flow.ToServer)
	w.single(rules.FieldMQTTUser, db.user, sc, flow.ToServer)
	w.keyed(sc, rules.FieldMQTTCommand, rules.FieldMQTTTopic, p.Name, p.Topics)
}

// Finding implements mqtt.Sink.
func (s mqttSink) Finding(f proto.Finding) { s.w.dbFinding(f) }

// mqttSection returns the EVE section of an MQTT flow.
func (db *dbConn) mqttSection() *eve.MQTTInfo {
	info := &eve.MQTTInfo{ClientID: string(db.client), User: string(db.user), Command: string(db.name)}
	if len(db.key) > 0 {
		info.Topic = eventText(db.key)
	}
	if *info == (eve.MQTTInfo{}) {
		return nil
	}
	return info
}

// keyedCommand inspects a cache command: its name (field cmd) and each
// of its keys (field key), in a scope of its own.
func (w *worker) keyedCommand(cmd, key rules.FieldKind, name []byte, keys [][]byte) {
	if w.stopped() {
		return
	}
	sc := &w.cctx.msg
	sc.reset(nil, nil)
	w.keyed(sc, cmd, key, name, keys)
}

// keyed evaluates a command's name (field cmd) and each of its keys or
// topics (field key) in scope sc, and decides it.
func (w *worker) keyed(sc *scope, cmd, key rules.FieldKind, name []byte, keys [][]byte) {
	db := &w.cctx.db
	db.name = name
	if len(keys) > 0 {
		db.key = keys[0]
	}
	const d = flow.ToServer
	w.single(cmd, name, sc, d)
	if fp := w.rs.Block[key]; fp.Used() {
		for _, k := range keys {
			w.scanValue(fp, nil, k, sc, d)
		}
		w.counts(fp, len(keys), nil, sc, d)
	}
	w.dbDone(sc)
}

// section returns the EVE section of a database flow: the connection's
// user and database, and the command being inspected, if any.
func (db *dbConn) section() *eve.DBInfo {
	info := &eve.DBInfo{User: string(db.user), Database: string(db.database), Command: db.command, TLS: db.tls}
	if len(db.name) > 0 {
		info.Command = string(db.name)
	}
	if len(db.query) > 0 {
		info.Query = eventText(db.query)
	}
	if len(db.key) > 0 {
		info.Key = eventText(db.key)
	}
	if *info == (eve.DBInfo{}) {
		return nil
	}
	return info
}
