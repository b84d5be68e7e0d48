package proto

// Finding is one anomaly a parser saw: malformed input, an evasion or
// request-smuggling signal, a limit that was exceeded, or a trait that hints
// at abuse (DNS tunnelling). Findings carry no pointers into the input, so
// a sink may keep them.
type Finding struct {
	Kind FindingKind
	Dir  Dir
	// Fatal means the parser stopped parsing the flow here: it consumes no
	// more input and reports nothing more for the flow (for HTTP, both
	// directions). The engine decides what a stopped flow deserves.
	Fatal bool
	// Offset is the stream offset, in Dir, of the start of the message in
	// which the anomaly was found (0 for a datagram).
	Offset int64
}

// FindingKind names an anomaly. Its String is stable and used in events
// and in rules ("http.cl_te", "dns.long_name", ...).
type FindingKind uint8

// Class groups finding kinds by what they say about the traffic.
type Class uint8

// Finding classes.
const (
	// ClassMalformed: the input breaks the protocol's grammar.
	ClassMalformed Class = iota
	// ClassEvasion: the input is ambiguous between implementations
	// (request smuggling, path obfuscation); the classic ways to slip past
	// an inspecting middlebox.
	ClassEvasion
	// ClassLimit: a named size or count limit was exceeded.
	ClassLimit
	// ClassSuspicious: legal, but typical of abuse (tunnelling, weak
	// protocol versions).
	ClassSuspicious
)

var classNames = [...]string{"malformed", "evasion", "limit", "suspicious"}

// String returns "malformed", "evasion", "limit" or "suspicious".
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Finding kinds, grouped by protocol. The comment says what triggers each.
const (
	FindingNone FindingKind = iota

	// HTTP/1.x message framing and syntax.
	HTTPRequestLineTooLong      // request or status line longer than Limits.MaxRequestLine
	HTTPHeadersTooLarge         // header block longer than Limits.MaxHeaderBytes
	HTTPTooManyHeaders          // more than Limits.MaxHeaderCount header fields
	HTTPInvalidMethod           // method is not a token
	HTTPInvalidRequestLine      // request line without target or version, or bad separators
	HTTP09Request               // request line without an HTTP version (HTTP/0.9)
	HTTPInvalidVersion          // version is not HTTP/1.x
	HTTPUnknownMinorVersion     // HTTP/1.x with x other than 0 or 1
	HTTPInvalidStatusLine       // status line is not "HTTP/1.x NNN reason"
	HTTPBareLF                  // a line ends in LF without CR
	HTTPBareCR                  // a CR that does not end a line
	HTTPObsFold                 // a header value continued on the next line (obs-fold)
	HTTPInvalidHeaderName       // empty name, non-token byte, or whitespace before the colon
	HTTPHeaderNoColon           // a header line without a colon
	HTTPInvalidHeaderValue      // control byte (NUL, ...) in a header value
	HTTPCLAndTE                 // both Content-Length and Transfer-Encoding
	HTTPContentLengthConflict   // several Content-Length values that differ
	HTTPDuplicateContentLength  // several Content-Length values, all equal
	HTTPInvalidContentLength    // Content-Length is not a decimal number
	HTTPInvalidTransferEncoding // Transfer-Encoding other than a final "chunked" (fatal in requests)
	HTTPTransferEncodingHTTP10  // Transfer-Encoding in an HTTP/1.0 message
	HTTPInvalidChunkSize        // chunk-size line is not hex digits (+ extensions)
	HTTPChunkLineTooLong        // chunk-size line longer than Limits.MaxChunkLine
	HTTPInvalidChunkData        // chunk data not followed by CRLF
	HTTPInvalidTrailer          // malformed trailer field
	HTTPTrailerTooLarge         // trailer section longer than Limits.MaxHeaderBytes
	HTTPMissingHost             // HTTP/1.1 request without Host
	HTTPDuplicateHost           // several Host headers
	HTTPHostMismatch            // absolute-form target whose host differs from Host
	HTTPPipelineTooDeep         // more than MaxPipelined requests awaiting responses
	HTTPUnsolicitedResponse     // a response with no request left to answer
	HTTPTruncated               // the connection ended inside a message
	HTTPLeadingEmptyLines       // more than one empty line (CRLF) before a message
	HTTPURIInvalidChar          // space or control byte in a request-target
	HTTPURIFragment             // '#' in a request-target

	// HTTP/1.x request-target decoding and path normalisation.
	HTTPURIInvalidEscape    // '%' not followed by two hex digits
	HTTPURINullByte         // NUL in the target, raw or %00
	HTTPURIEncodedSlash     // %2f or %5c in the path
	HTTPURIBackslash        // '\' in the path (treated as '/')
	HTTPURIDuplicateSlash   // "//" in the path
	HTTPURIDotSegment       // "." or ".." segment in the path
	HTTPURIEncodedDot       // %2e in the path
	HTTPURIAboveRoot        // ".." that would climb above "/"
	HTTPURIOverlongUTF8     // overlong UTF-8 (%c0%af, ...) decoded to ASCII
	HTTPURIUEncoding        // IIS %uXXXX escape
	HTTPURIDoubleEncoding   // decoding leaves another %XX escape (%252e)
	HTTPURITooManyArgs      // query with more than Limits.MaxArgs arguments (the rest stay unsplit)
	HTTPURIInvalidUTF8      // invalid UTF-8 after decoding (not overlong)
	HTTPURINonASCIIPath     // raw byte >= 0x80 in the target
	HTTPURIPathNotAbsolute  // origin-form target not starting with '/'
	HTTPURIParameterInPath  // ';' path parameters (Tomcat-style ";jsessionid")
	HTTPURIDotSegmentEscape // "." or ".." segment that only appears after decoding (%2e%2e)

	// HTTP/1.x leading empty lines and body content decoding.
	HTTPTooManyEmptyLines // more than MaxEmptyLineBytes CR/LF bytes before a message (fatal)
	HTTPUnknownEncoding   // a Content-Encoding not decoded: the body is inspected as sent
	HTTPTooManyEncodings  // more stacked content codings than MaxEncodings (fatal)
	HTTPDecodeError       // a compressed body does not decode (fatal in a request; in a response what decoded was inspected)
	HTTPDecodeLimit       // decoded body longer than Limits.MaxDecodedBody: the rest is not inspected
	HTTPDecompressionBomb // decoded/encoded ratio above Limits.MaxDecodeRatio (fatal)
	HTTPDecoderMemory     // a brotli or zstd window above its bound, or the worker's decoder budget spent (fatal)
	HTTPPartEncoding      // multipart part with a Content-Transfer-Encoding that does not decode cleanly

	// TLS.
	TLSInvalidRecord       // record header with bad type, version or length
	TLSHandshakeTooLarge   // hello longer than MaxHelloBytes
	TLSUnexpectedHandshake // first handshake message is not the expected hello
	TLSMalformedHello      // hello lengths do not add up
	TLSMalformedExtension  // extension body does not parse
	TLSDuplicateExtension  // the same extension twice
	TLSInvalidSNI          // SNI empty, too long, not a host name, or an IP address
	TLSMultipleSNI         // several host names in server_name
	TLSSSLv2Hello          // SSLv2-compatible ClientHello
	TLSWeakVersion         // best version offered or chosen is below TLS 1.2

	// DNS.
	DNSTruncated         // message ends inside its header or a record
	DNSInvalidLabel      // label type 0x40/0x80, or a label longer than 63
	DNSPointerLoop       // compression pointer that is forward, loops, or chains too far
	DNSNameTooLong       // name longer than 255 bytes on the wire
	DNSNoQuestion        // query without a question
	DNSManyQuestions     // more than one question
	DNSTrailingData      // bytes after the last record
	DNSTooManyRecords    // more records than MaxRecords (the rest is not checked)
	DNSInvalidLength     // TCP length prefix shorter than a DNS header
	DNSLabelChars        // query name with bytes other than letters, digits, '-', '_'
	DNSLongName          // query name longer than Config.LongName (tunnelling hint)
	DNSLongLabel         // query label longer than Config.LongLabel (tunnelling hint)
	DNSManyLabels        // query name with more than Config.ManyLabels labels (tunnelling hint)
	DNSSuspiciousType    // query type NULL or ANY, or AXFR over UDP
	DNSInvalidOpcode     // opcode not QUERY, IQUERY, STATUS, NOTIFY, UPDATE or DSO
	DNSResponseAsRequest // a response where a query belongs, or the reverse

	// SSH.
	SSHBannerTooLong // identification line longer than 255 bytes
	SSHInvalidBanner // no "SSH-x.y-software" line where one belongs
	SSHBareLF        // identification line ending in LF without CR
	SSHVersion1      // protocol version 1.x (not 1.99)
	SSHInvalidChars  // control or non-ASCII byte in the identification line
	SSHTooManyLines  // more lines before the identification than MaxPreBannerLines

	// HTTP/2 (dpi/proto/http2). The parser stops at a fatal one: what
	// follows cannot be framed or decoded with confidence.
	HTTP2InvalidPreface     // no client connection preface, or a side's first frame is not SETTINGS (fatal)
	HTTP2MalformedFrame     // a frame whose length, stream id, padding or place breaks RFC 9113 (fatal)
	HTTP2FrameTooLarge      // a frame longer than the receiver's SETTINGS_MAX_FRAME_SIZE
	HTTP2HPACKError         // a header block that does not decode (fatal: the compression state is lost)
	HTTP2HeaderListTooLarge // a header block over Limits.MaxHeaderBlock, MaxHeaderListSize or MaxHeaderCount (fatal)
	HTTP2HPACKBomb          // a header list over hpackBombFloor decoded at more than Limits.MaxHPACKRatio times its encoded size (fatal)
	HTTP2ContinuationFlood  // a header block in more than Limits.MaxContinuations CONTINUATION frames, or growing past MaxHeaderBlock in them (fatal)
	HTTP2RapidReset         // more than Limits.MaxRapidResets streams reset by the client within Limits.RapidResetWindow (CVE-2023-44487)
	HTTP2SettingsFlood      // more than Limits.MaxUnackedSettings SETTINGS frames awaiting their ACK
	HTTP2PingFlood          // more than Limits.MaxUnackedPings PING frames awaiting their ACK
	HTTP2StreamID           // a new stream with an id of the wrong parity or not above the previous one
	HTTP2StreamState        // a frame its stream's state forbids: on an idle stream, after its sender ended the stream, response DATA before HEADERS
	HTTP2TooManyStreams     // more than Limits.MaxStreams streams open at once (fatal)
	HTTP2MalformedHeaders   // invalid or uppercase field name, CR/LF/NUL or edge whitespace in a value, pseudo-header misuse or absence
	HTTP2ConnectionHeader   // a connection-specific field (Connection, Transfer-Encoding, Upgrade, TE other than trailers...)
	HTTP2ContentLength      // DATA of a stream not adding up to its content-length
	HTTP2Truncated          // the connection ended inside a frame or a header block

	// gRPC (dpi/proto/grpc).
	GRPCInvalidPath      // :path of a gRPC request is not /service/method
	GRPCMessageTooLarge  // a length-prefixed message over Limits.MaxMessage: skipped, not inspected
	GRPCUnknownEncoding  // a compressed message in a grpc-encoding other than gzip: not inspected
	GRPCDecodeError      // a gzip message that does not decode
	GRPCDecodeLimit      // a message decoding past Limits.MaxDecoded: the rest is not inspected
	GRPCMalformedMessage // a message that is not protobuf wire format (walked up to the error)
	GRPCWalkLimit        // a message nested deeper than Limits.MaxDepth or with more than MaxFields fields
	GRPCTruncated        // the stream ended inside a length-prefixed message

	// Databases, caches and queues (mysql, pgsql, redis, memcached, mqtt
	// packages).
	MySQLMalformed    // a packet that breaks the grammar of its phase (fatal)
	MySQLQueryTooLong // a query or statement longer than mysql.MaxQuery: its first MaxQuery bytes are inspected
	MySQLCompressed   // the connection switched to the compressed protocol: its commands are not inspected
	PgSQLMalformed    // a message with an impossible length or layout (fatal)
	PgSQLQueryTooLong // a query longer than pgsql.MaxQuery: its first MaxQuery bytes are inspected
	RedisMalformed    // a command that is neither a RESP array of bulk strings nor an inline command (fatal)
	RedisArgTooLong   // a command name or key longer than redis.MaxArg: its first MaxArg bytes are inspected
	RedisTooManyKeys  // a command with more than redis.MaxKeys keys: the first MaxKeys are inspected
	// Memcached.
	MemcachedMalformed    // a binary request with another magic or a key past its body or longer than 250 bytes (fatal)
	MemcachedLineTooLong  // a text command line longer than memcached.MaxLine (fatal)
	MemcachedTooManyKeys  // a command with more than memcached.MaxKeys keys: the first MaxKeys are inspected
	MemcachedBadDataChunk // a data block that does not end in CR LF (memcached answers CLIENT_ERROR and goes on)
	// MQTT.
	MQTTMalformed     // a reserved packet type, a remaining length past 4 bytes, a packet shorter than its fields, a CONNECT of another protocol (fatal)
	MQTTPacketTooLong // a CONNECT, SUBSCRIBE or UNSUBSCRIBE longer than mqtt.MaxKeep: what follows is not inspected
	MQTTTooManyTopics // a SUBSCRIBE or UNSUBSCRIBE with more than mqtt.MaxTopics filters: the first MaxTopics are inspected

	numFindingKinds
)

type kindInfo struct {
	name  string
	class Class
}

var kindInfos = [numFindingKinds]kindInfo{
	FindingNone: {"none", ClassMalformed},

	HTTPRequestLineTooLong:      {"http.request_line_too_long", ClassLimit},
	HTTPHeadersTooLarge:         {"http.headers_too_large", ClassLimit},
	HTTPTooManyHeaders:          {"http.too_many_headers", ClassLimit},
	HTTPInvalidMethod:           {"http.invalid_method", ClassMalformed},
	HTTPInvalidRequestLine:      {"http.invalid_request_line", ClassMalformed},
	HTTP09Request:               {"http.http09_request", ClassMalformed},
	HTTPInvalidVersion:          {"http.invalid_version", ClassMalformed},
	HTTPUnknownMinorVersion:     {"http.unknown_minor_version", ClassMalformed},
	HTTPInvalidStatusLine:       {"http.invalid_status_line", ClassMalformed},
	HTTPBareLF:                  {"http.bare_lf", ClassEvasion},
	HTTPBareCR:                  {"http.bare_cr", ClassEvasion},
	HTTPObsFold:                 {"http.obs_fold", ClassEvasion},
	HTTPInvalidHeaderName:       {"http.invalid_header_name", ClassEvasion},
	HTTPHeaderNoColon:           {"http.header_no_colon", ClassEvasion},
	HTTPInvalidHeaderValue:      {"http.invalid_header_value", ClassMalformed},
	HTTPCLAndTE:                 {"http.cl_te", ClassEvasion},
	HTTPContentLengthConflict:   {"http.content_length_conflict", ClassEvasion},
	HTTPDuplicateContentLength:  {"http.duplicate_content_length", ClassEvasion},
	HTTPInvalidContentLength:    {"http.invalid_content_length", ClassEvasion},
	HTTPInvalidTransferEncoding: {"http.invalid_transfer_encoding", ClassEvasion},
	HTTPTransferEncodingHTTP10:  {"http.transfer_encoding_http10", ClassEvasion},
	HTTPInvalidChunkSize:        {"http.invalid_chunk_size", ClassEvasion},
	HTTPChunkLineTooLong:        {"http.chunk_line_too_long", ClassLimit},
	HTTPInvalidChunkData:        {"http.invalid_chunk_data", ClassEvasion},
	HTTPInvalidTrailer:          {"http.invalid_trailer", ClassMalformed},
	HTTPTrailerTooLarge:         {"http.trailer_too_large", ClassLimit},
	HTTPMissingHost:             {"http.missing_host", ClassMalformed},
	HTTPDuplicateHost:           {"http.duplicate_host", ClassEvasion},
	HTTPHostMismatch:            {"http.host_mismatch", ClassEvasion},
	HTTPPipelineTooDeep:         {"http.pipeline_too_deep", ClassLimit},
	HTTPUnsolicitedResponse:     {"http.unsolicited_response", ClassMalformed},
	HTTPTruncated:               {"http.truncated", ClassMalformed},
	HTTPLeadingEmptyLines:       {"http.leading_empty_lines", ClassMalformed},
	HTTPURIInvalidChar:          {"http.uri_invalid_char", ClassEvasion},
	HTTPURIFragment:             {"http.uri_fragment", ClassMalformed},

	HTTPURIInvalidEscape:    {"http.uri_invalid_escape", ClassEvasion},
	HTTPURINullByte:         {"http.uri_null_byte", ClassEvasion},
	HTTPURIEncodedSlash:     {"http.uri_encoded_slash", ClassEvasion},
	HTTPURIBackslash:        {"http.uri_backslash", ClassEvasion},
	HTTPURIDuplicateSlash:   {"http.uri_duplicate_slash", ClassEvasion},
	HTTPURIDotSegment:       {"http.uri_dot_segment", ClassEvasion},
	HTTPURIEncodedDot:       {"http.uri_encoded_dot", ClassEvasion},
	HTTPURIAboveRoot:        {"http.uri_above_root", ClassEvasion},
	HTTPURIOverlongUTF8:     {"http.uri_overlong_utf8", ClassEvasion},
	HTTPURIUEncoding:        {"http.uri_u_encoding", ClassEvasion},
	HTTPURIDoubleEncoding:   {"http.uri_double_encoding", ClassEvasion},
	HTTPURITooManyArgs:      {"http.uri_too_many_args", ClassLimit},
	HTTPURIInvalidUTF8:      {"http.uri_invalid_utf8", ClassMalformed},
	HTTPURINonASCIIPath:     {"http.uri_non_ascii", ClassMalformed},
	HTTPURIPathNotAbsolute:  {"http.uri_path_not_absolute", ClassMalformed},
	HTTPURIParameterInPath:  {"http.uri_path_parameter", ClassEvasion},
	HTTPURIDotSegmentEscape: {"http.uri_encoded_dot_segment", ClassEvasion},

	HTTPTooManyEmptyLines: {"http.too_many_empty_lines", ClassLimit},
	HTTPUnknownEncoding:   {"http.unknown_encoding", ClassEvasion},
	HTTPTooManyEncodings:  {"http.too_many_encodings", ClassLimit},
	HTTPDecodeError:       {"http.decode_error", ClassMalformed},
	HTTPDecodeLimit:       {"http.decode_limit", ClassLimit},
	HTTPDecompressionBomb: {"http.decompression_bomb", ClassLimit},
	HTTPDecoderMemory:     {"http.decoder_memory", ClassLimit},
	HTTPPartEncoding:      {"http.part_encoding", ClassMalformed},

	TLSInvalidRecord:       {"tls.invalid_record", ClassMalformed},
	TLSHandshakeTooLarge:   {"tls.handshake_too_large", ClassLimit},
	TLSUnexpectedHandshake: {"tls.unexpected_handshake", ClassMalformed},
	TLSMalformedHello:      {"tls.malformed_hello", ClassMalformed},
	TLSMalformedExtension:  {"tls.malformed_extension", ClassMalformed},
	TLSDuplicateExtension:  {"tls.duplicate_extension", ClassEvasion},
	TLSInvalidSNI:          {"tls.invalid_sni", ClassEvasion},
	TLSMultipleSNI:         {"tls.multiple_sni", ClassEvasion},
	TLSSSLv2Hello:          {"tls.sslv2_hello", ClassSuspicious},
	TLSWeakVersion:         {"tls.weak_version", ClassSuspicious},

	DNSTruncated:         {"dns.truncated", ClassMalformed},
	DNSInvalidLabel:      {"dns.invalid_label", ClassMalformed},
	DNSPointerLoop:       {"dns.pointer_loop", ClassEvasion},
	DNSNameTooLong:       {"dns.name_too_long", ClassMalformed},
	DNSNoQuestion:        {"dns.no_question", ClassMalformed},
	DNSManyQuestions:     {"dns.many_questions", ClassSuspicious},
	DNSTrailingData:      {"dns.trailing_data", ClassMalformed},
	DNSTooManyRecords:    {"dns.too_many_records", ClassLimit},
	DNSInvalidLength:     {"dns.invalid_length", ClassMalformed},
	DNSLabelChars:        {"dns.label_chars", ClassSuspicious},
	DNSLongName:          {"dns.long_name", ClassSuspicious},
	DNSLongLabel:         {"dns.long_label", ClassSuspicious},
	DNSManyLabels:        {"dns.many_labels", ClassSuspicious},
	DNSSuspiciousType:    {"dns.suspicious_type", ClassSuspicious},
	DNSInvalidOpcode:     {"dns.invalid_opcode", ClassMalformed},
	DNSResponseAsRequest: {"dns.wrong_direction", ClassMalformed},

	SSHBannerTooLong: {"ssh.banner_too_long", ClassLimit},
	SSHInvalidBanner: {"ssh.invalid_banner", ClassMalformed},
	SSHBareLF:        {"ssh.bare_lf", ClassMalformed},
	SSHVersion1:      {"ssh.version1", ClassSuspicious},
	SSHInvalidChars:  {"ssh.invalid_chars", ClassMalformed},
	SSHTooManyLines:  {"ssh.too_many_lines", ClassLimit},

	HTTP2InvalidPreface:     {"http2.invalid_preface", ClassMalformed},
	HTTP2MalformedFrame:     {"http2.malformed_frame", ClassMalformed},
	HTTP2FrameTooLarge:      {"http2.frame_too_large", ClassLimit},
	HTTP2HPACKError:         {"http2.hpack_error", ClassMalformed},
	HTTP2HeaderListTooLarge: {"http2.header_list_too_large", ClassLimit},
	HTTP2HPACKBomb:          {"http2.hpack_bomb", ClassLimit},
	HTTP2ContinuationFlood:  {"http2.continuation_flood", ClassLimit},
	HTTP2RapidReset:         {"http2.rapid_reset", ClassSuspicious},
	HTTP2SettingsFlood:      {"http2.settings_flood", ClassSuspicious},
	HTTP2PingFlood:          {"http2.ping_flood", ClassSuspicious},
	HTTP2StreamID:           {"http2.stream_id", ClassMalformed},
	HTTP2StreamState:        {"http2.stream_state", ClassMalformed},
	HTTP2TooManyStreams:     {"http2.too_many_streams", ClassLimit},
	HTTP2MalformedHeaders:   {"http2.malformed_headers", ClassEvasion},
	HTTP2ConnectionHeader:   {"http2.connection_header", ClassEvasion},
	HTTP2ContentLength:      {"http2.content_length", ClassEvasion},
	HTTP2Truncated:          {"http2.truncated", ClassMalformed},

	GRPCInvalidPath:      {"grpc.invalid_path", ClassMalformed},
	GRPCMessageTooLarge:  {"grpc.message_too_large", ClassLimit},
	GRPCUnknownEncoding:  {"grpc.unknown_encoding", ClassEvasion},
	GRPCDecodeError:      {"grpc.decode_error", ClassMalformed},
	GRPCDecodeLimit:      {"grpc.decode_limit", ClassLimit},
	GRPCMalformedMessage: {"grpc.malformed_message", ClassMalformed},
	GRPCWalkLimit:        {"grpc.walk_limit", ClassLimit},
	GRPCTruncated:        {"grpc.truncated", ClassMalformed},

	MySQLMalformed:    {"mysql.malformed", ClassMalformed},
	MySQLQueryTooLong: {"mysql.query_too_long", ClassLimit},
	MySQLCompressed:   {"mysql.compressed", ClassLimit},
	PgSQLMalformed:    {"pgsql.malformed", ClassMalformed},
	PgSQLQueryTooLong: {"pgsql.query_too_long", ClassLimit},
	RedisMalformed:    {"redis.malformed", ClassMalformed},
	RedisArgTooLong:   {"redis.arg_too_long", ClassLimit},
	RedisTooManyKeys:  {"redis.too_many_keys", ClassLimit},

	MemcachedMalformed:    {"memcached.malformed", ClassMalformed},
	MemcachedLineTooLong:  {"memcached.line_too_long", ClassLimit},
	MemcachedTooManyKeys:  {"memcached.too_many_keys", ClassLimit},
	MemcachedBadDataChunk: {"memcached.bad_data_chunk", ClassMalformed},

	MQTTMalformed:     {"mqtt.malformed", ClassMalformed},
	MQTTPacketTooLong: {"mqtt.packet_too_long", ClassLimit},
	MQTTTooManyTopics: {"mqtt.too_many_topics", ClassLimit},
}

// String returns the kind's stable name, "<protocol>.<anomaly>".
func (k FindingKind) String() string {
	if k < numFindingKinds {
		return kindInfos[k].name
	}
	return "unknown"
}

// Class returns the kind's class.
func (k FindingKind) Class() Class {
	if k < numFindingKinds {
		return kindInfos[k].class
	}
	return ClassMalformed
}

// FindingKinds returns every finding kind, without FindingNone.
func FindingKinds() []FindingKind {
	ks := make([]FindingKind, 0, numFindingKinds-1)
	for k := FindingKind(1); k < numFindingKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// ParseFindingKind returns the kind whose String is s.
func ParseFindingKind(s string) (FindingKind, bool) {
	for k := FindingKind(1); k < numFindingKinds; k++ {
		if kindInfos[k].name == s {
			return k, true
		}
	}
	return FindingNone, false
}

// KindSet is a set of finding kinds, used by parsers to report each kind
// at most once per message.
type KindSet [(int(numFindingKinds) + 63) / 64]uint64

// Add adds k and reports whether it was absent.
func (s *KindSet) Add(k FindingKind) bool {
	w, b := k/64, uint64(1)<<(k%64)
	if s[w]&b != 0 {
		return false
	}
	s[w] |= b
	return true
}

// Has reports whether k is in the set.
func (s *KindSet) Has(k FindingKind) bool { return s[k/64]&(uint64(1)<<(k%64)) != 0 }

// Clear empties the set.
func (s *KindSet) Clear() { *s = KindSet{} }
