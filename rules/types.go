package rules

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dlclark/regexp2"

	"github.com/deepwall/deepwall/internal/ascii"
	"github.com/deepwall/deepwall/rules/transform"
)

// Limits on what a rule file may contain. Rule files come from users and
// from the agent's API, so every list and string is bounded.
const (
	MaxFileSize     = 16 << 20 // bytes of one rule file
	MaxRules        = 65536    // rules in a set, includes counted
	MaxErrors       = 100      // errors collected before giving up on a file
	MaxIncludeDepth = 8        // nesting of include:
	MaxIncludes     = 256      // files in one set
	MaxListLen      = 1024     // addresses, ports or app protocols in one list
	MaxRegexLen     = 64 << 10 // bytes of one regex (the Core Rule Set has regexes of 20 KiB)
	MaxNameLen      = 256      // bytes of a rule name
	MaxTextLen      = 4096     // bytes of a description
	MaxConds        = 8        // conditions of one rule (match: as a list)
	MaxCondFields   = 32       // fields of one condition
	MaxPhrases      = 16384    // phrases of one condition
	MaxPhraseLen    = 1024     // bytes of one phrase
	MaxNames        = 64       // entries of one condition's name:
	MaxValueNameLen = 256      // bytes of one name: entry or of name_regex:
	MaxScore        = 1000     // anomaly score of one rule, and a threshold
	MaxParanoia     = 4        // paranoia levels are 1 to MaxParanoia
	maxYAMLNodes    = 1 << 21  // YAML nodes visited in one file (aliases included)
)

// Action is what a rule does when it matches.
type Action uint8

// Rule actions. The zero value is ActionAllow, which is also the default
// ACL action.
const (
	ActionAllow Action = iota
	ActionAlert
	ActionBlock
)

var actionNames = [...]string{ActionAllow: "allow", ActionAlert: "alert", ActionBlock: "block"}

// String names the action as rule files write it.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Severity grades a rule's hits for the logs.
type Severity uint8

// Severities; a rule without severity: gets SeverityMedium.
const (
	SeverityLow Severity = iota + 1
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{SeverityLow: "low", SeverityMedium: "medium", SeverityHigh: "high", SeverityCritical: "critical"}

// String names the severity as rule files write it.
func (s Severity) String() string {
	if s >= SeverityLow && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// FieldKind names the part of the traffic a match inspects.
type FieldKind uint8

// Field kinds. The DPI engine fills one buffer per kind (per header name
// for FieldHTTPHeader).
const (
	FieldHTTPMethod          FieldKind = iota + 1 // request method
	FieldHTTPURI                                  // request target as sent: path and query
	FieldHTTPPath                                 // path part of the request target
	FieldHTTPArgs                                 // query string (without '?')
	FieldHTTPHeaders                              // all request header lines, "Name: value\r\n" each
	FieldHTTPHeader                               // one request header's value; Field.Name is the lower-case name
	FieldHTTPBody                                 // request body (stream)
	FieldHTTPResponseBody                         // response body (stream)
	FieldHTTPResponseHeaders                      // all response header lines
	FieldTLSSNI                                   // server name of the ClientHello
	FieldDNSQuery                                 // query name, dotted, lower case
	FieldPayload                                  // raw TCP/UDP payload from the client (stream)
	FieldPayloadToClient                          // raw payload from the server (stream)

	// Per-value fields: the engine matches each value on its own (anchors
	// apply to the value), as ModSecurity matches each member of a
	// collection.
	FieldHTTPArg                 // each argument value: query, url-encoded or multipart form, JSON body
	FieldHTTPArgName             // each argument name
	FieldHTTPCookie              // each cookie value
	FieldHTTPCookieName          // each cookie name
	FieldHTTPHeaderValue         // each request header value
	FieldHTTPHeaderName          // each request header name
	FieldHTTPFilename            // path part of the target, percent-decoded once, not normalised
	FieldHTTPBasename            // last segment of http.filename
	FieldHTTPRequestLine         // "METHOD target VERSION"
	FieldHTTPProtocol            // version as sent ("HTTP/1.1")
	FieldHTTPQuery               // query string as sent (not decoded)
	FieldHTTPFile                // each uploaded file's name (multipart filename=)
	FieldHTTPFileField           // each uploaded file's form field name
	FieldHTTPPartHeader          // each multipart part header line, "Name: value"
	FieldHTTPStatus              // response status code, three digits
	FieldHTTPResponseHeaderValue // each response header value
	// FieldHTTPPlainBody is the request body when it is not parsed as
	// JSON, XML or multipart (form bodies and bodies of any other type):
	// the REQUEST_BODY of ModSecurity and Coraza with the Core Rule Set's
	// body processor set-up. One value, the body as kept for inspection.
	FieldHTTPPlainBody
	FieldHTTPXMLText // each text between two tags of an XML body, trimmed (Coraza's XML:/*)
	FieldHTTPXMLAttr // each attribute value of an XML body (XML://@*)
	FieldHTTPVersion // protocol version: "HTTP/1.0", "HTTP/1.1" (as sent), "HTTP/2.0" for HTTP/2 streams

	// gRPC fields (HTTP/2 streams with content-type application/grpc*).
	FieldGRPCService       // service of the :path /service/method
	FieldGRPCMethod        // method of the :path
	FieldGRPCStatus        // grpc-status of the response (trailers or trailers-only), decimal
	FieldGRPCMessage       // grpc-message, percent-decoded
	FieldGRPCString        // each string or bytes value of a request or response message that reads as text (protobuf wire format walked without a schema)
	FieldGRPCMessageLength // each length-prefixed message's length, decimal, both directions
	// FieldHTTPFinding is each protocol anomaly the HTTP/1, HTTP/2 and
	// gRPC parsing reports that does not stop the connection by itself
	// ("http2.rapid_reset", "http.unknown_encoding", "grpc.walk_limit").
	FieldHTTPFinding

	// Database and cache fields: one command (query, prepared statement,
	// database switch) at a time.
	FieldMySQLQuery    // COM_QUERY and COM_STMT_PREPARE text
	FieldMySQLUser     // user of the handshake (or of the last COM_CHANGE_USER)
	FieldMySQLDatabase // database of the handshake, COM_INIT_DB, COM_CHANGE_USER
	FieldMySQLCommand  // command name: query, init_db, stmt_prepare, stmt_execute, quit, ...
	FieldPgSQLQuery    // simple query and Parse text
	FieldPgSQLUser     // user of the startup message
	FieldPgSQLDatabase // database of the startup message (the user when absent)
	FieldRedisCommand  // command name, lower case
	FieldRedisKey      // each key of the command
	// FieldSQLVerb and FieldSQLClass are the statements of a mysql.query
	// or pgsql.query: each one's first keyword, lower case, and its
	// class (dql, dml, ddl, dcl, tcl, other), plus "multi" in sql.class
	// when the query holds several statements.
	FieldSQLVerb
	FieldSQLClass
	FieldMemcachedCommand // command word (text) or the text command of the opcode (binary)
	FieldMemcachedKey     // each key of the command
	FieldMQTTCommand      // control packet type: connect, publish, subscribe, ...
	FieldMQTTClientID     // client identifier of the CONNECT, evaluated with every packet
	FieldMQTTUser         // user name of the CONNECT, evaluated with every packet
	FieldMQTTTopic        // topic of a PUBLISH, each topic filter of a SUBSCRIBE or UNSUBSCRIBE
)

type fieldInfo struct {
	name     string
	app      string // application protocol the field belongs to; "" = any
	stream   bool   // Hyperscan stream mode: the field arrives in pieces
	tcp      bool   // only over TCP
	multi    bool   // several values, each matched on its own
	response bool   // a part of the response (outbound anomaly score)
	body     bool   // known only once the request body is complete
}

var fieldInfos = [...]fieldInfo{
	FieldHTTPMethod:          {name: "http.method", app: "http", tcp: true},
	FieldHTTPURI:             {name: "http.uri", app: "http", tcp: true},
	FieldHTTPPath:            {name: "http.path", app: "http", tcp: true},
	FieldHTTPArgs:            {name: "http.args", app: "http", tcp: true},
	FieldHTTPHeaders:         {name: "http.headers", app: "http", tcp: true},
	FieldHTTPHeader:          {name: "http.header.", app: "http", tcp: true, multi: true},
	FieldHTTPBody:            {name: "http.body", app: "http", stream: true, tcp: true, body: true},
	FieldHTTPResponseBody:    {name: "http.response_body", app: "http", stream: true, tcp: true, response: true},
	FieldHTTPResponseHeaders: {name: "http.response_headers", app: "http", tcp: true, response: true},
	FieldTLSSNI:              {name: "tls.sni", app: "tls", tcp: true},
	FieldDNSQuery:            {name: "dns.query", app: "dns"},
	FieldPayload:             {name: "payload", stream: true},
	FieldPayloadToClient:     {name: "payload.to_client", stream: true, response: true},

	FieldHTTPArg:                 {name: "http.arg", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPArgName:             {name: "http.arg_name", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPCookie:              {name: "http.cookie", app: "http", tcp: true, multi: true},
	FieldHTTPCookieName:          {name: "http.cookie_name", app: "http", tcp: true, multi: true},
	FieldHTTPHeaderValue:         {name: "http.header_value", app: "http", tcp: true, multi: true},
	FieldHTTPHeaderName:          {name: "http.header_name", app: "http", tcp: true, multi: true},
	FieldHTTPFilename:            {name: "http.filename", app: "http", tcp: true},
	FieldHTTPBasename:            {name: "http.basename", app: "http", tcp: true},
	FieldHTTPRequestLine:         {name: "http.request_line", app: "http", tcp: true},
	FieldHTTPProtocol:            {name: "http.protocol", app: "http", tcp: true},
	FieldHTTPQuery:               {name: "http.query", app: "http", tcp: true},
	FieldHTTPFile:                {name: "http.file", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPFileField:           {name: "http.file_field", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPPartHeader:          {name: "http.part_header", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPStatus:              {name: "http.status", app: "http", tcp: true, response: true},
	FieldHTTPResponseHeaderValue: {name: "http.response_header_value", app: "http", tcp: true, multi: true, response: true},
	FieldHTTPPlainBody:           {name: "http.plain_body", app: "http", tcp: true, body: true},
	FieldHTTPXMLText:             {name: "http.xml_text", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPXMLAttr:             {name: "http.xml_attr", app: "http", tcp: true, multi: true, body: true},
	FieldHTTPVersion:             {name: "http.version", app: "http", tcp: true},

	FieldGRPCService:       {name: "grpc.service", app: "http2", tcp: true},
	FieldGRPCMethod:        {name: "grpc.method", app: "http2", tcp: true},
	FieldGRPCStatus:        {name: "grpc.status", app: "http2", tcp: true, response: true},
	FieldGRPCMessage:       {name: "grpc.message", app: "http2", tcp: true, response: true},
	FieldGRPCString:        {name: "grpc.string", app: "http2", tcp: true, multi: true},
	FieldGRPCMessageLength: {name: "grpc.message_length", app: "http2", tcp: true, multi: true},
	FieldHTTPFinding:       {name: "http.finding", app: "http", tcp: true, multi: true},

	FieldMySQLQuery:    {name: "mysql.query", app: "mysql", tcp: true},
	FieldMySQLUser:     {name: "mysql.user", app: "mysql", tcp: true},
	FieldMySQLDatabase: {name: "mysql.database", app: "mysql", tcp: true},
	FieldMySQLCommand:  {name: "mysql.command", app: "mysql", tcp: true},
	FieldPgSQLQuery:    {name: "pgsql.query", app: "postgresql", tcp: true},
	FieldPgSQLUser:     {name: "pgsql.user", app: "postgresql", tcp: true},
	FieldPgSQLDatabase: {name: "pgsql.database", app: "postgresql", tcp: true},
	FieldRedisCommand:  {name: "redis.command", app: "redis", tcp: true},
	FieldRedisKey:      {name: "redis.key", app: "redis", tcp: true, multi: true},
	FieldSQLVerb:       {name: "sql.verb", app: "sql", tcp: true, multi: true},
	FieldSQLClass:      {name: "sql.class", app: "sql", tcp: true, multi: true},

	FieldMemcachedCommand: {name: "memcached.command", app: "memcached", tcp: true},
	FieldMemcachedKey:     {name: "memcached.key", app: "memcached", tcp: true, multi: true},
	FieldMQTTCommand:      {name: "mqtt.command", app: "mqtt", tcp: true},
	FieldMQTTClientID:     {name: "mqtt.client_id", app: "mqtt", tcp: true},
	FieldMQTTUser:         {name: "mqtt.user", app: "mqtt", tcp: true},
	FieldMQTTTopic:        {name: "mqtt.topic", app: "mqtt", tcp: true, multi: true},
}

// Field is a match target: a kind, plus the header name for FieldHTTPHeader.
type Field struct {
	Kind FieldKind
	Name string // lower-case header name for FieldHTTPHeader, else ""
}

func (f Field) info() fieldInfo {
	if f.Kind >= FieldHTTPMethod && int(f.Kind) < len(fieldInfos) {
		return fieldInfos[f.Kind]
	}
	return fieldInfo{}
}

// String gives the field's name in the rule language.
func (f Field) String() string {
	if f.Kind == FieldHTTPHeader {
		return "http.header." + f.Name
	}
	if n := f.info().name; n != "" {
		return n
	}
	return "field(" + strconv.Itoa(int(f.Kind)) + ")"
}

// Stream reports whether the field is scanned in Hyperscan stream mode
// (bodies and raw payload, which arrive in pieces).
func (f Field) Stream() bool { return f.info().stream }

// AppProto is the application protocol the field belongs to ("" for the
// raw payload fields, which exist for every protocol).
func (f Field) AppProto() string { return f.info().app }

// FilledBy reports whether flows of application protocol app fill the
// field: its own protocol, HTTP/2 for the http.* fields (every stream
// fills them as an HTTP/1 transaction does), and MySQL and PostgreSQL
// for the sql.* fields (the statements of their queries).
func (f Field) FilledBy(app string) bool {
	a := f.info().app
	return a == app || a == "http" && app == "http2" || a == "sql" && (app == "mysql" || app == "postgresql")
}

// Multi reports whether the field has several values that are matched
// one by one (every argument, cookie, header...). http.header.<name> is
// multi too: every field with that name is matched.
func (f Field) Multi() bool { return f.info().multi }

// Response reports whether the field is a part of the response: its
// rules' scores count toward the outbound anomaly score.
func (f Field) Response() bool { return f.info().response }

// Body reports whether the field's values are complete only once the
// request body is (body arguments, uploaded files, the body itself).
func (f Field) Body() bool { return f.info().body }

// ParseField reads a field name of the rule language.
func ParseField(s string) (Field, error) {
	if name, ok := strings.CutPrefix(s, "http.header."); ok {
		if !validHeaderName(name) {
			return Field{}, fmt.Errorf("invalid header name %q in field %q", name, s)
		}
		return Field{Kind: FieldHTTPHeader, Name: strings.ToLower(name)}, nil
	}
	for k, fi := range fieldInfos {
		if fi.name != "" && FieldKind(k) != FieldHTTPHeader && fi.name == s {
			return Field{Kind: FieldKind(k)}, nil
		}
	}
	return Field{}, fmt.Errorf("unknown field %q", s)
}

// FieldNames lists the field names of the rule language (http.header.<name>
// stands for every header).
func FieldNames() []string {
	var out []string
	for k, fi := range fieldInfos {
		switch {
		case fi.name == "":
		case FieldKind(k) == FieldHTTPHeader:
			out = append(out, "http.header.<name>")
		default:
			out = append(out, fi.name)
		}
	}
	return out
}

// validHeaderName accepts an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// AppProtocols are the application protocol names app_proto and
// app_proto_not accept; the DPI engine reports one of them for every flow
// once identification is final ("unknown" when nothing matched).
var AppProtocols = []string{
	"http", "http2", "tls", "dns", "ssh", "smtp", "ftp", "imap", "pop3",
	"mqtt", "redis", "mysql", "postgresql", "mongodb", "rdp", "smb", "sip",
	"ntp", "dhcp", "quic", "memcached", "unknown",
}

// appTransport says which IP protocols an application protocol runs over.
var appTransport = map[string][]uint8{
	"http": {6}, "http2": {6}, "tls": {6}, "dns": {6, 17}, "ssh": {6}, "smtp": {6},
	"ftp": {6}, "imap": {6}, "pop3": {6}, "mqtt": {6}, "redis": {6}, "mysql": {6},
	"postgresql": {6}, "mongodb": {6}, "rdp": {6, 17}, "smb": {6}, "sip": {6, 17},
	"ntp": {17}, "dhcp": {17}, "quic": {17}, "sql": {6}, "memcached": {6},
}

func knownAppProto(s string) bool {
	for _, p := range AppProtocols {
		if p == s {
			return true
		}
	}
	return false
}

// IP protocol numbers the rule language names.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoGRE    uint8 = 47
	ProtoESP    uint8 = 50
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

var protoNames = map[string]uint8{
	"any": 0, "icmp": ProtoICMP, "tcp": ProtoTCP, "udp": ProtoUDP, "gre": ProtoGRE,
	"esp": ProtoESP, "icmpv6": ProtoICMPv6, "ipv6-icmp": ProtoICMPv6, "sctp": ProtoSCTP,
}

// ProtoString names an IP protocol number the way rule files write it.
func ProtoString(p uint8) string {
	switch p {
	case 0:
		return "any"
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoGRE:
		return "gre"
	case ProtoESP:
		return "esp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoSCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// hasPorts reports whether packets of protocol p carry ports (0 = any
// protocol, which may).
func hasPorts(p uint8) bool { return p == 0 || p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

// Contains reports whether p lies in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

// String formats the range as rule files write it: "80" or "8000-8080".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// IDRange is a range of rule ids, both ends included (Lo == Hi for one
// id).
type IDRange struct{ Lo, Hi uint32 }

// Contains reports whether id lies in the range.
func (r IDRange) Contains(id uint32) bool { return id >= r.Lo && id <= r.Hi }

// String formats the range as rule files write it: "942100" or
// "942000-942999".
func (r IDRange) String() string {
	if r.Lo == r.Hi {
		return strconv.FormatUint(uint64(r.Lo), 10)
	}
	return strconv.FormatUint(uint64(r.Lo), 10) + "-" + strconv.FormatUint(uint64(r.Hi), 10)
}

// Position is a place in a rule file; Line and Column are 1-based.
type Position struct {
	File         string
	Line, Column int
}

// String formats the position as file:line:col ("-" for a rule built in
// Go, which has none).
func (p Position) String() string {
	if p == (Position{}) {
		return "-"
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// Rule is one validated rule.
type Rule struct {
	ID          uint32
	Name        string
	Description string
	Action      Action
	Severity    Severity
	Category    string
	Disabled    bool // enabled: false — kept in the set, never compiled

	Proto              uint8          // 0 = any
	Src, Dst           []netip.Prefix // empty = any; IPv4 unmapped
	SrcPorts, DstPorts []PortRange    // empty = any
	AppProto           []string       // flow's app protocol must be one of these
	AppProtoNot        []string       // ... and none of these

	// SrcContainers and DstContainers are container selectors
	// (container:NAME, see container.go), resolved by the agent.
	SrcContainers, DstContainers []string

	Match *Match // nil for L3/L4/app-proto-only rules; the first condition of a chain
	// Conds are all the rule's conditions, Match first, when match: is a
	// list: the rule hits once every one held within one scope (an HTTP
	// transaction, a DNS message, the flow). Nil or of length 1 for a
	// single condition. Use Conditions() to iterate.
	Conds []*Match

	// Score is the rule's anomaly score (0: none): when the rule hits it
	// adds Score to the transaction's inbound score, or outbound score
	// for rules on response fields, which threshold rules compare.
	Score int
	// Paranoia is the paranoia level the rule belongs to (0 = 1): rules
	// above the set's ParanoiaLevel are not compiled.
	Paranoia int
	// Anomaly makes the rule a threshold rule: it hits when a
	// transaction's score in that direction reaches the threshold.
	Anomaly *Threshold
	// Exempts makes an allow rule a scoped exclusion (CRS's
	// ctl:ruleRemoveById under a condition): when it hits, the rules
	// with these ids are exempted in the scope where it hit (they log
	// nothing, block nothing and add no anomaly score), wherever they
	// are in the file, and the rules below it are not cut. Empty for an
	// ordinary allow rule.
	Exempts []IDRange

	Pos Position // the rule's "- " entry

	at    map[string]Position // positions of the rule's keys and values, for errors
	index int                 // 1-based position in its file (0 when built in Go)
}

// Layer7 reports whether the rule needs the DPI engine: it has a match,
// an app_proto condition or an anomaly threshold.
func (r *Rule) Layer7() bool {
	return r.Match != nil || len(r.AppProto) > 0 || len(r.AppProtoNot) > 0 || r.Anomaly != nil
}

// Conditions returns the rule's conditions (Match first), nil when it has
// none.
func (r *Rule) Conditions() []*Match {
	if len(r.Conds) > 0 {
		return r.Conds
	}
	if r.Match != nil {
		return []*Match{r.Match}
	}
	return nil
}

// Outbound reports whether the rule's score counts toward the outbound
// (response) anomaly score: some condition inspects a response field.
func (r *Rule) Outbound() bool {
	for _, m := range r.Conditions() {
		for _, f := range m.AllFields() {
			if f.Response() {
				return true
			}
		}
	}
	return false
}

// Level is the rule's paranoia level (1 when not set).
func (r *Rule) Level() int { return max(r.Paranoia, 1) }

// Direction says which anomaly score a threshold rule compares.
type Direction uint8

// Anomaly score directions.
const (
	Inbound  Direction = iota + 1 // request fields; checked when the request is complete
	Outbound                      // response fields; checked as soon as the score changes
)

// String names the direction as rule files write it.
func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}

// Threshold is a threshold rule's condition: the transaction's anomaly
// score in Direction has reached Score.
type Threshold struct {
	Direction Direction
	Score     int
}

// IsACL reports whether the rule is an ordered first-match ACL entry (no
// layer-7 condition, action allow or block) that XDP can enforce.
func (r *Rule) IsACL() bool { return !r.Layer7() && r.Action != ActionAlert }

// posOf returns the position recorded for key, or the rule's own.
func (r *Rule) posOf(key string) Position {
	if p, ok := r.at[key]; ok {
		return p
	}
	return r.Pos
}

// Match is one layer-7 condition of a rule: a regex (optionally confirmed
// by a validator), a phrase list, a detector or a count over one or more
// transformed fields. Exactly one of Regex, Phrases, Detect and Count is
// set.
type Match struct {
	Field      Field
	Fields     []Field // every field the condition inspects, Field first; nil = just Field
	Regex      string  // Hyperscan (PCRE) syntax; "" when another operator is set
	Phrases    []string
	Caseless   bool
	DotAll     bool
	Multiline  bool
	UTF8       bool // pattern and input are UTF-8 (Hyperscan UTF8|UCP)
	Transforms []transform.Transform
	// MultiMatch: the regex or phrases are matched against the value
	// before the chain and after each of its steps (ModSecurity's
	// multiMatch).
	MultiMatch bool
	Validate   string // validator the matched text must pass ("" = none): luhn, ssn, iban, jwt
	Detect     string // one of Detectors (sqli, xss, traversal, cmdi, ...): a detector instead of a regex
	// Not inverts a regex or phrase condition: it holds when some value of
	// the field does not match (a field without values never holds).
	Not bool
	// Count compares the number of values of the field (every header of
	// that name, every argument...) instead of matching them.
	Count *Count
	// Except names (lower case) the values a condition on named values
	// (NamedFields) skips, ASCII case-insensitively: a plain entry is a
	// request header of http.header_value, "FIELD:NAME" the values of
	// NAME in the named field FIELD ("http.arg:password", SecLang's
	// !ARGS:password). The negation of Names, per field.
	Except []string
	// Names (lower case) and NameRegex select, on a field of named values
	// (NamedFields: arguments, cookies, header values, files), the values
	// the condition applies to: those whose name is one of Names or
	// matches NameRegex, ASCII case-insensitively (SecLang's ARGS:name,
	// REQUEST_COOKIES:/regex/, as Coraza's case-insensitive collections).
	// Both empty: every value.
	Names     []string
	NameRegex string
	nameRx    *regexp.Regexp // NameRegex compiled, (?i) and unanchored
	// exceptFields: some Except entry is FIELD:NAME (set by validation,
	// as nameRx): without one, a value of a field other than
	// http.header_value is never excluded, at the cost of one test.
	exceptFields bool
	// Compare, on a regex condition, also requires a capture group of the
	// regex's first match in the value to compare with another request
	// field's value (compare.go).
	Compare *Compare

	src scalarSource        // where Regex came from, to place errors inside it
	at  map[string]Position // positions of the condition's keys, for errors
}

// AllFields returns every field the condition inspects.
func (m *Match) AllFields() []Field {
	if len(m.Fields) > 0 {
		return m.Fields
	}
	return []Field{m.Field}
}

// Chains returns the transform chains the condition is matched under:
// the chain, or with MultiMatch every prefix of it (the empty one first).
func (m *Match) Chains() [][]transform.Transform {
	if !m.MultiMatch || len(m.Transforms) == 0 {
		return [][]transform.Transform{m.Transforms}
	}
	out := make([][]transform.Transform, 0, len(m.Transforms)+1)
	for i := 0; i <= len(m.Transforms); i++ {
		out = append(out, m.Transforms[:i:i])
	}
	return out
}

// NameFilter reports whether the condition applies only to values of
// some names (name: or name_regex:).
func (m *Match) NameFilter() bool { return len(m.Names) > 0 || m.NameRegex != "" }

// Selects reports whether the condition applies to a value named name: no
// name filter, or name is one of Names or matches NameRegex. A value
// without a name (nil) is selected only when there is no filter.
func (m *Match) Selects(name []byte) bool {
	if !m.NameFilter() {
		return true
	}
	if name == nil {
		return false
	}
	for _, n := range m.Names {
		if ascii.EqualFold(name, n) {
			return true
		}
	}
	if m.NameRegex == "" {
		return false
	}
	if m.nameRx == nil {
		// Parse and Validate compile it; a Match built by hand and never
		// validated selects nothing rather than everything.
		return false
	}
	return m.nameRx.Match(name)
}

// compileNameRegex compiles NameRegex as the engine matches it.
func compileNameRegex(s string) (*regexp.Regexp, error) {
	if len(s) > MaxValueNameLen {
		return nil, fmt.Errorf("name_regex is longer than %d bytes", MaxValueNameLen)
	}
	// The user's pattern alone first, so an error quotes what they wrote
	// (not the (?i) added here) without regexp's own prefix.
	if _, err := syntax.Parse(s, syntax.Perl); err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("name_regex: %s: `%s`", se.Code, se.Expr)
		}
		return nil, fmt.Errorf("name_regex: %w", err)
	}
	re, err := regexp.Compile("(?i)" + s)
	if err != nil {
		return nil, fmt.Errorf("name_regex: %w", err)
	}
	return re, nil
}

// NamedFields are the fields whose values have a name that name: and
// name_regex: select on.
var NamedFields = []FieldKind{FieldHTTPArg, FieldHTTPCookie, FieldHTTPHeaderValue, FieldHTTPFile, FieldHTTPResponseHeaderValue}

// Excluded reports whether the condition skips the value of field k
// named name (except:, ASCII case-insensitive).
func (m *Match) Excluded(k FieldKind, name []byte) bool {
	if k != FieldHTTPHeaderValue && !m.exceptFields {
		return false
	}
	for _, e := range m.Except {
		if n, ok := exceptName(e, k); ok && ascii.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// ExceptNames returns the names of the values of field k the condition
// skips (except:).
func (m *Match) ExceptNames(k FieldKind) []string {
	var out []string
	for _, e := range m.Except {
		if n, ok := exceptName(e, k); ok {
			out = append(out, n)
		}
	}
	return out
}

// exceptName returns the name an except: entry skips in field k: a plain
// entry names a header of http.header_value, "FIELD:NAME" a value of
// FIELD.
func exceptName(e string, k FieldKind) (string, bool) {
	if !strings.HasPrefix(e, "http.") {
		// A header (the engine asks for every header value a detector
		// or pattern sees: the common case stays a compare).
		return e, k == FieldHTTPHeaderValue
	}
	f, n, ok := splitExcept(e)
	if !ok {
		return e, k == FieldHTTPHeaderValue
	}
	return n, f == k
}

// splitExcept splits an except: entry "FIELD:NAME" whose FIELD is one of
// NamedFields; ok is false for a plain (header) entry.
func splitExcept(e string) (FieldKind, string, bool) {
	f, n, ok := strings.Cut(e, ":")
	if !ok {
		return 0, "", false
	}
	for _, k := range NamedFields {
		if fieldInfos[k].name == f {
			return k, n, true
		}
	}
	return 0, "", false
}

// CountOp compares a count with a number.
type CountOp uint8

// Count comparisons.
const (
	CountEQ CountOp = iota + 1
	CountNE
	CountLT
	CountLE
	CountGT
	CountGE
)

var countOpNames = [...]string{CountEQ: "==", CountNE: "!=", CountLT: "<", CountLE: "<=", CountGT: ">", CountGE: ">="}

// String gives the operator as rule files write it.
func (o CountOp) String() string {
	if o >= CountEQ && int(o) < len(countOpNames) {
		return countOpNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Count is a count condition: the number of values Op N.
type Count struct {
	Op CountOp
	N  int
}

// Holds reports whether n values satisfy the comparison.
func (c *Count) Holds(n int) bool {
	switch c.Op {
	case CountEQ:
		return n == c.N
	case CountNE:
		return n != c.N
	case CountLT:
		return n < c.N
	case CountLE:
		return n <= c.N
	case CountGT:
		return n > c.N
	case CountGE:
		return n >= c.N
	}
	return false
}

// String formats the comparison as rule files write it: "== 0".
func (c *Count) String() string { return c.Op.String() + " " + strconv.Itoa(c.N) }

// ParseCount reads a count comparison such as "== 0" or ">1".
func ParseCount(s string) (*Count, error) {
	t := strings.TrimSpace(s)
	var op CountOp
	for _, o := range []CountOp{CountEQ, CountNE, CountLE, CountGE, CountLT, CountGT} {
		if name := countOpNames[o]; strings.HasPrefix(t, name) {
			op, t = o, strings.TrimSpace(t[len(name):])
			break
		}
	}
	if op == 0 {
		return nil, fmt.Errorf("count %q must start with ==, !=, <, <=, > or >=", s)
	}
	n, err := strconv.ParseUint(t, 10, 31)
	if err != nil {
		return nil, fmt.Errorf("count %q: %q is not a whole number", s, t)
	}
	return &Count{Op: op, N: int(n)}, nil
}

// Set is a validated rule set in file order (includes expanded in place).
type Set struct {
	Rules      []*Rule
	ACLDefault Action   // ActionAllow (default) or ActionBlock
	Files      []string // files read, top-level first
	// ParanoiaLevel: rules whose paranoia is above it are not compiled
	// (0 = 1).
	ParanoiaLevel int
}

// Level is the set's paranoia level (1 when not set).
func (s *Set) Level() int { return max(s.ParanoiaLevel, 1) }

// Active reports whether r is compiled: enabled and within the paranoia
// level.
func (s *Set) Active(r *Rule) bool { return !r.Disabled && r.Level() <= s.Level() }

// Enabled returns the rules that are not switched off, in order.
func (s *Set) Enabled() []*Rule {
	out := make([]*Rule, 0, len(s.Rules))
	for _, r := range s.Rules {
		if !r.Disabled && !r.HasContainers() { // unresolved selectors match nothing
			out = append(out, r)
		}
	}
	return out
}

// Rule returns the rule with the given id, or nil.
func (s *Set) Rule(id uint32) *Rule {
	for _, r := range s.Rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// MaxCompareGroup bounds the capture group a compare: names.
const MaxCompareGroup = 99

// CompareOp is how a compare: condition option compares a capture with
// another field's value.
type CompareOp uint8

// Comparisons of a capture with a field's value (byte for byte, case
// sensitive, as ModSecurity's @streq, @beginsWith, @endsWith and
// @contains).
const (
	CompareEquals     CompareOp = iota + 1 // the capture is the value
	CompareBeginsWith                      // the capture begins with the value
	CompareEndsWith                        // the capture ends with the value
	CompareContains                        // the value occurs in the capture
	// Numeric comparisons (ModSecurity's @lt @le @gt @ge): both sides
	// read as whole numbers, a side that is not one counting as 0.
	CompareLT // the capture is below the value
	CompareLE
	CompareGT
	CompareGE
)

var compareOpNames = [...]string{CompareEquals: "equals", CompareBeginsWith: "begins_with", CompareEndsWith: "ends_with", CompareContains: "contains",
	CompareLT: "lt", CompareLE: "le", CompareGT: "gt", CompareGE: "ge"}

// String gives the comparison as rule files write it.
func (o CompareOp) String() string {
	if o >= CompareEquals && int(o) < len(compareOpNames) {
		return compareOpNames[o]
	}
	return "compare(" + strconv.Itoa(int(o)) + ")"
}

// ParseCompareOp reads a comparison name.
func ParseCompareOp(s string) (CompareOp, error) {
	for o, n := range compareOpNames {
		if n != "" && n == s {
			return CompareOp(o), nil
		}
	}
	return 0, fmt.Errorf("unknown comparison %q%s; known: %s", s, didYouMean(s, compareOpNames[1:]), strings.Join(compareOpNames[1:], ", "))
}

// Compare is a regex condition's comparison between a part of the value
// it matched and another field of the same request: the condition holds
// for a value when the regex matches it and capture group Group of the
// first match (0 = the whole match; a group that took no part is empty),
// compared with With's value by Op, gives true (false with Not). With's
// value is the first value of the field in the request ("" when it has
// none), untransformed; or, with WithGroup, another capture group of the
// same match. This is SecLang's `capture` followed by a comparison of
// TX:N with a macro such as %{request_headers.host} (943110) or with
// %{tx.M} (920190).
type Compare struct {
	Group int
	Op    CompareOp
	With  Field // zero when WithGroup is set
	// WithGroup is the capture group (1 or more) compared with, when not
	// 0; exclusive with With.
	WithGroup int
	Not       bool

	once sync.Once
	re   *regexp.Regexp      // Go's engine when it accepts the pattern
	re2  *regexp2.Regexp     // else the backtracking one
	err  error               // neither accepts it
	at   map[string]Position // positions of the compare: keys, for errors (nil when built in Go)
}

// CompareFields are the fields a compare: may name as With: request-head
// fields with one value (the first, for a header).
var CompareFields = []string{"http.method", "http.uri", "http.path", "http.args", "http.protocol", "http.query", "http.header.<name>"}

// compareWith reports whether f may be a Compare's With.
func compareWith(f Field) bool {
	switch f.Kind {
	case FieldHTTPMethod, FieldHTTPURI, FieldHTTPPath, FieldHTTPArgs, FieldHTTPProtocol, FieldHTTPQuery, FieldHTTPHeader:
		return true
	}
	return false
}

// compareTimeout bounds one capture by the backtracking engine.
const compareTimeout = 5 * time.Millisecond

// prepare compiles m's regex for captures once (Go's regexp, else
// regexp2 for lookaround and back-references).
func (c *Compare) prepare(m *Match) error {
	c.once.Do(func() {
		var fl string
		if m.Caseless {
			fl += "i"
		}
		if m.DotAll {
			fl += "s"
		}
		if m.Multiline {
			fl += "m"
		}
		expr := m.Regex
		if fl != "" {
			expr = "(?" + fl + ")" + expr
		}
		groups := 0
		if re, err := regexp.Compile(expr); err == nil {
			c.re, groups = re, re.NumSubexp()
		} else {
			re2, err2 := regexp2.Compile(expr, regexp2.None)
			if err2 != nil {
				c.err = fmt.Errorf("the regex cannot be run to capture: %w", err2)
				return
			}
			re2.MatchTimeout = compareTimeout
			c.re2, groups = re2, len(re2.GetGroupNumbers())-1
		}
		if g := max(c.Group, c.WithGroup); g > groups {
			c.err = fmt.Errorf("group %d: the regex has %d capturing groups", g, groups)
			c.re, c.re2 = nil, nil
		}
	})
	return c.err
}

// Capture returns capture group Group of the first match of m's regex in
// value (nil when the group took no part) and group WithGroup (nil when
// not set or when it took no part), and false when the regex does not
// match (or cannot be run: a pattern the rule set's validation refused,
// a regexp2 timeout).
func (c *Compare) Capture(m *Match, value []byte) (capture, with []byte, ok bool) {
	if c.prepare(m) != nil {
		return nil, nil, false
	}
	if c.re != nil {
		loc := c.re.FindSubmatchIndex(value)
		if loc == nil {
			return nil, nil, false
		}
		group := func(g int) []byte {
			if s, e := loc[2*g], loc[2*g+1]; s >= 0 {
				return value[s:e]
			}
			return nil
		}
		if c.WithGroup > 0 {
			with = group(c.WithGroup)
		}
		return group(c.Group), with, true
	}
	mt, err := c.re2.FindStringMatch(string(value))
	if err != nil || mt == nil {
		return nil, nil, false
	}
	group := func(n int) []byte {
		g := mt.GroupByNumber(n)
		if g == nil || len(g.Captures) == 0 {
			return nil
		}
		return []byte(g.String())
	}
	if c.WithGroup > 0 {
		with = group(c.WithGroup)
	}
	return group(c.Group), with, true
}

// Holds reports whether the comparison holds between capture and the
// other field's value.
func (c *Compare) Holds(capture, value []byte) bool {
	var r bool
	switch c.Op {
	case CompareEquals:
		r = bytes.Equal(capture, value)
	case CompareBeginsWith:
		r = bytes.HasPrefix(capture, value)
	case CompareEndsWith:
		r = bytes.HasSuffix(capture, value)
	case CompareContains:
		r = bytes.Contains(capture, value)
	case CompareLT:
		r = number(capture) < number(value)
	case CompareLE:
		r = number(capture) <= number(value)
	case CompareGT:
		r = number(capture) > number(value)
	case CompareGE:
		r = number(capture) >= number(value)
	default:
		return false
	}
	return r != c.Not
}

// number reads a whole number as ModSecurity's numeric operators do: an
// optional sign and digits (at most 18), anything else 0.
func number(b []byte) int64 {
	b = bytes.TrimSpace(b)
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg, b = b[0] == '-', b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		return -n
	}
	return n
}
