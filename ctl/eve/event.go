package eve

import (
	"strconv"
	"time"
)

// Event is one verdict event, in the field names of Suricata's EVE JSON so
// that tools that read EVE (jq recipes, Filebeat's suricata module, Splunk
// apps) read deepwall's log unchanged. Empty sections are omitted.
type Event struct {
	Timestamp EveTime `json:"timestamp"`
	FlowID    uint64  `json:"flow_id"`
	InIface   string  `json:"in_iface,omitempty"`
	// Container is the protected container the event belongs to
	// (deepwall protect; nil on the agent's static pair).
	Container *Container `json:"container,omitempty"`
	EventType EventType  `json:"event_type"`
	SrcIP     string     `json:"src_ip"`
	SrcPort   uint16     `json:"src_port"`
	DestIP    string     `json:"dest_ip"`
	DestPort  uint16     `json:"dest_port"`
	Proto     string     `json:"proto"`
	AppProto  string     `json:"app_proto,omitempty"`
	// Direction is "to_server" or "to_client", as in EVE.
	Direction string `json:"direction,omitempty"`

	// CommunityID is the flow's Community ID (package communityid), set
	// by the writer (SetCommunityID).
	CommunityID string `json:"community_id,omitempty"`

	Alert *Alert     `json:"alert,omitempty"`
	Drop  *Drop      `json:"drop,omitempty"`
	Flow  *FlowStats `json:"flow,omitempty"`
	HTTP  *HTTPInfo  `json:"http,omitempty"`
	TLS   *TLSInfo   `json:"tls,omitempty"`
	DNS   *DNSInfo   `json:"dns,omitempty"`
	SSH   *SSHInfo   `json:"ssh,omitempty"`
	MySQL *DBInfo    `json:"mysql,omitempty"`
	PgSQL *DBInfo    `json:"pgsql,omitempty"`
	Redis *DBInfo    `json:"redis,omitempty"`

	Memcached *DBInfo   `json:"memcached,omitempty"`
	MQTT      *MQTTInfo `json:"mqtt,omitempty"`

	// K8s is the pod of Container, when a --kubernetes agent protects it.
	K8s *K8s `json:"k8s,omitempty"`
}

// K8s names the Kubernetes pod of an event's protected port, with its
// labels as they were when it was protected.
type K8s struct {
	Namespace string            `json:"namespace"`
	Pod       string            `json:"pod"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Container names the workload of an event's protected port: its name
// in rules, and for a runtime's container the runtime, its id, image and
// labels (in_iface alone names a veth, which a runtime reuses for
// another container later). Labels are bounded by whoever fills them in
// (ctl/agent/protect: at most 32, each cut to 256 bytes).
type Container struct {
	Name    string            `json:"name"`
	Runtime string            `json:"runtime,omitempty"`
	ID      string            `json:"id,omitempty"`
	Image   string            `json:"image,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// EventType is EVE's event_type.
type EventType string

// Event types deepwall emits.
const (
	EventAlert EventType = "alert" // a rule matched; Alert.Action says whether it blocked
	EventDrop  EventType = "drop"  // a packet was dropped for a reason that is not a rule (evasion, limits)
	EventFlow  EventType = "flow"  // a flow ended
)

// Alert is EVE's alert section.
type Alert struct {
	// Action is "allowed" or "blocked", as in EVE.
	Action      string `json:"action"`
	GID         int    `json:"gid"`
	SignatureID uint32 `json:"signature_id"`
	Rev         int    `json:"rev"`
	Signature   string `json:"signature"`
	Category    string `json:"category,omitempty"`
	// Severity follows EVE: 1 is the most severe (critical=1, high=2,
	// medium=3, low=4).
	Severity int `json:"severity"`
	// AlertExtra holds deepwall's own fields of an alert, written in
	// the alert's "deepwall" object (Suricata's alert has no room for
	// them; evetest checks the split).
	AlertExtra `json:"deepwall,omitzero"`
}

// AlertExtra is deepwall's part of an alert.
type AlertExtra struct {
	// Field is the rule field that matched (http.args, payload…).
	Field string `json:"field,omitempty"`
	// Matched is the text that matched, bounded; for DLP rules it is masked
	// (dpi.Mask) and never carries the full secret.
	Matched string `json:"matched,omitempty"`
	// Score is the transaction's anomaly score that made a threshold
	// rule hit, Rules the scored rules that made it up, in hit order.
	Score int      `json:"score,omitempty"`
	Rules []uint32 `json:"rules,omitempty"`
	// WouldBlock marks an alert that would have blocked the flow on a
	// port in monitor or discover mode, which blocks nothing (Action is
	// then "allowed").
	WouldBlock bool `json:"would_block,omitempty"`
}

// Drop is EVE's drop section, for drops that no signature explains.
type Drop struct {
	Reason string `json:"reason"`
	Len    int    `json:"len,omitempty"`
	// DropExtra holds deepwall's own fields of a drop, written in the
	// drop's "deepwall" object (Suricata's drop section has no room for
	// them).
	DropExtra `json:"deepwall,omitzero"`
}

// DropExtra is deepwall's part of a drop event.
type DropExtra struct {
	// Limit names the configured limit a message exceeded and its value
	// ("http.max_request_line=8192"), for drops caused by a limit.
	Limit string `json:"limit,omitempty"`
}

// FlowStats is EVE's flow section, written when a flow ends.
type FlowStats struct {
	PktsToServer  uint64  `json:"pkts_toserver"`
	PktsToClient  uint64  `json:"pkts_toclient"`
	BytesToServer uint64  `json:"bytes_toserver"`
	BytesToClient uint64  `json:"bytes_toclient"`
	Start         EveTime `json:"start"`
	End           EveTime `json:"end"`
	Age           int64   `json:"age"`
	State         string  `json:"state"`
	Reason        string  `json:"reason"`
	Alerted       bool    `json:"alerted"`
	// Action is the flow's final verdict: "pass", "drop" or "" while
	// undecided.
	Action string `json:"action,omitempty"`
	// FlowExtra holds deepwall's own fields of a flow, in its "deepwall"
	// object (Suricata's flow.bypassed is an object of counters).
	FlowExtra `json:"deepwall,omitzero"`
}

// FlowExtra is deepwall's part of a flow event.
type FlowExtra struct {
	// Bypassed is true when the kernel fast path carried the flow's tail.
	Bypassed bool `json:"bypassed,omitempty"`
}

// HTTPInfo is EVE's http section.
type HTTPInfo struct {
	Hostname  string `json:"hostname,omitempty"`
	URL       string `json:"url,omitempty"`
	Method    string `json:"http_method,omitempty"`
	UserAgent string `json:"http_user_agent,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
	Status    int    `json:"status,omitempty"`
	Length    int64  `json:"length,omitempty"`
	// HTTPExtra holds deepwall's own fields of a transaction, in its
	// "deepwall" object.
	HTTPExtra `json:"deepwall,omitzero"`
}

// HTTPExtra is deepwall's part of an HTTP transaction.
type HTTPExtra struct {
	// StreamID is the HTTP/2 stream of the transaction (absent for
	// HTTP/1).
	StreamID uint32 `json:"stream_id,omitempty"`
}

// TLSInfo is EVE's tls section.
type TLSInfo struct {
	SNI     string `json:"sni,omitempty"`
	Version string `json:"version,omitempty"`
}

// DNSInfo is EVE's dns section.
type DNSInfo struct {
	// Version is the EVE DNS format: 2, whose records carry type, rrname
	// and rrtype at the top (Suricata requires it).
	Version int    `json:"version"`
	Type    string `json:"type,omitempty"` // "query" or "answer"
	RRName  string `json:"rrname,omitempty"`
	RRType  string `json:"rrtype,omitempty"`
	RCode   string `json:"rcode,omitempty"`
}

// SSHInfo is EVE's ssh section, with the client's or server's banner.
type SSHInfo struct {
	Client *SSHHost `json:"client,omitempty"`
	Server *SSHHost `json:"server,omitempty"`
}

// SSHHost is one side of an SSH banner exchange.
type SSHHost struct {
	ProtoVersion    string `json:"proto_version,omitempty"`
	SoftwareVersion string `json:"software_version,omitempty"`
}

// DBInfo is the mysql, pgsql, redis or memcached section: the connection's user and
// database, and the command the event is about (deepwall's own fields;
// Suricata's pgsql section differs).
type DBInfo struct {
	User     string `json:"user,omitempty"`
	Database string `json:"database,omitempty"`
	// Command is MySQL's command name (query, init_db, stmt_prepare...),
	// "query" or "parse" for PostgreSQL, the Redis or memcached command, or
	// "handshake"/"startup" for the connection's start.
	Command string `json:"command,omitempty"`
	// Query is the SQL text (the first 1 KiB); Key the first key of a
	// Redis or memcached command.
	Query string `json:"query,omitempty"`
	Key   string `json:"key,omitempty"`
	// TLS is "ssl" or "gss" once the connection switched to encryption
	// (its commands are no longer inspected).
	TLS string `json:"tls,omitempty"`
}

// MQTTInfo is the mqtt section: the connection's client id and user (of
// its CONNECT), and the packet the event is about (deepwall's own
// fields).
type MQTTInfo struct {
	ClientID string `json:"client_id,omitempty"`
	User     string `json:"user,omitempty"`
	// Command is the packet type: connect, publish, subscribe...
	Command string `json:"command,omitempty"`
	// Topic is a PUBLISH's topic or the first filter of a SUBSCRIBE or
	// UNSUBSCRIBE (the first 1 KiB).
	Topic string `json:"topic,omitempty"`
}

// EveTime formats like Suricata: 2006-01-02T15:04:05.000000-0700.
type EveTime time.Time

// eveLayout is Suricata's timestamp layout.
const eveLayout = "2006-01-02T15:04:05.000000-0700"

// MarshalJSON implements json.Marshaler without reflection or allocation
// beyond the result.
func (t EveTime) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(eveLayout)+2)
	b = append(b, '"')
	b = time.Time(t).AppendFormat(b, eveLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *EveTime) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.Parse(eveLayout, s)
	if err != nil {
		v, err = time.Parse(time.RFC3339Nano, s)
	}
	*t = EveTime(v)
	return err
}

// Time returns t as a time.Time.
func (t EveTime) Time() time.Time { return time.Time(t) }
