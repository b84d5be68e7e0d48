package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
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
	MaxRegexLen     = 8192     // bytes of one regex
	MaxNameLen      = 256      // bytes of a rule name
	MaxTextLen      = 4096     // bytes of a description
	MaxChainLen     = 8        // transforms in one chain
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
)

type fieldInfo struct {
	name   string
	app    string // application protocol the field belongs to; "" = any
	stream bool   // Hyperscan stream mode: the field arrives in pieces
	tcp    bool   // only over TCP
}

var fieldInfos = [...]fieldInfo{
	FieldHTTPMethod:          {"http.method", "http", false, true},
	FieldHTTPURI:             {"http.uri", "http", false, true},
	FieldHTTPPath:            {"http.path", "http", false, true},
	FieldHTTPArgs:            {"http.args", "http", false, true},
	FieldHTTPHeaders:         {"http.headers", "http", false, true},
	FieldHTTPHeader:          {"http.header.", "http", false, true},
	FieldHTTPBody:            {"http.body", "http", true, true},
	FieldHTTPResponseBody:    {"http.response_body", "http", true, true},
	FieldHTTPResponseHeaders: {"http.response_headers", "http", false, true},
	FieldTLSSNI:              {"tls.sni", "tls", false, true},
	FieldDNSQuery:            {"dns.query", "dns", false, false},
	FieldPayload:             {"payload", "", true, false},
	FieldPayloadToClient:     {"payload.to_client", "", true, false},
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
	"ntp", "dhcp", "quic", "unknown",
}

// appTransport says which IP protocols an application protocol runs over.
var appTransport = map[string][]uint8{
	"http": {6}, "http2": {6}, "tls": {6}, "dns": {6, 17}, "ssh": {6}, "smtp": {6},
	"ftp": {6}, "imap": {6}, "pop3": {6}, "mqtt": {6}, "redis": {6}, "mysql": {6},
	"postgresql": {6}, "mongodb": {6}, "rdp": {6, 17}, "smb": {6}, "sip": {6, 17},
	"ntp": {17}, "dhcp": {17}, "quic": {17},
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

	Match *Match // nil for L3/L4/app-proto-only rules

	Pos Position // the rule's "- " entry

	at    map[string]Position // positions of the rule's keys and values, for errors
	index int                 // 1-based position in its file (0 when built in Go)
}

// Layer7 reports whether the rule needs the DPI engine: it has a match or
// an app_proto condition.
func (r *Rule) Layer7() bool {
	return r.Match != nil || len(r.AppProto) > 0 || len(r.AppProtoNot) > 0
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

// Match is a rule's layer-7 condition: a regex (optionally confirmed by a
// validator) or a libinjection detector over one transformed field.
type Match struct {
	Field      Field
	Regex      string // Hyperscan (PCRE) syntax; "" when Detect is set
	Caseless   bool
	DotAll     bool
	Multiline  bool
	UTF8       bool // pattern and input are UTF-8 (Hyperscan UTF8|UCP)
	Transforms []Transform
	Validate   string // validator the matched text must pass ("" = none): luhn, ssn, iban, jwt
	Detect     string // "sqli" | "xss": libinjection instead of a regex

	src scalarSource // where Regex came from, to place errors inside it
}

// Set is a validated rule set in file order (includes expanded in place).
type Set struct {
	Rules      []*Rule
	ACLDefault Action   // ActionAllow (default) or ActionBlock
	Files      []string // files read, top-level first
}

// Enabled returns the rules that are not switched off, in order.
func (s *Set) Enabled() []*Rule {
	out := make([]*Rule, 0, len(s.Rules))
	for _, r := range s.Rules {
		if !r.Disabled {
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
