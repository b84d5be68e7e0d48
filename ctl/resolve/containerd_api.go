package resolve

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// containerd's API is gRPC on a unix socket. deepwall speaks the little
// of it that it needs without containerd's client module (which pulls
// in the whole of containerd): gRPC is HTTP/2 (net/http's unencrypted
// HTTP/2) carrying length-prefixed protobuf messages, and the few
// messages read here are decoded field by field with protowire, every
// length bounded. Used: the event stream (Events/Subscribe) for task
// starts, and Containers/Get for a container's image and labels.

// Limits of containerd's API answers.
const (
	// maxGRPCMessage bounds one gRPC message deepwall reads: an event
	// envelope is a few hundred bytes; a container (Containers/Get)
	// carries its OCI spec, tens of KiB.
	maxGRPCMessage = maxStateFile
	// maxEnvelope bounds an event; a longer one ends the stream, which is
	// opened again.
	maxEnvelope = maxEventLine
)

// gRPC methods of containerd's API.
const (
	grpcSubscribe    = "/containerd.services.events.v1.Events/Subscribe"
	grpcGetContainer = "/containerd.services.containers.v1.Containers/Get"
	// taskStartFilter asks for task starts only (a container's process
	// started: ctr run, a restart by CRI or nerdctl).
	taskStartFilter = `topic=="/tasks/start"`
	// taskStartType is the type URL of a /tasks/start event.
	taskStartType = "containerd.events.TaskStart"
	// namespaceHeader is the gRPC metadata that names containerd's
	// namespace of a call.
	namespaceHeader = "containerd-namespace"
)

// errGRPC: containerd answered a call with a gRPC error status.
var errGRPC = errors.New("containerd api")

// grpcCall opens a gRPC call of method on socket with one request
// message and returns the response stream; the caller reads it with
// grpcRead and closes it. Its time is ctx's: a server stream's headers
// come with its first message (an event stream's, when something
// happens), so no header timeout applies.
func grpcCall(ctx context.Context, socket, method, namespace string, msg []byte) (io.ReadCloser, error) {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, MaxResponseHeaderBytes: maxAPIHeader,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: dockerAPITimeout}
			return d.DialContext(ctx, "unix", socket)
		}}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://containerd"+method, bytes.NewReader(append(frame, msg...)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	if namespace != "" {
		req.Header.Set(namespaceHeader, namespace)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("%w: %s: %w", errGRPC, method, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("%w: %s: http %d", errGRPC, method, resp.StatusCode)
	}
	// An error known at once comes as headers only (trailers-only).
	if s := resp.Header.Get("Grpc-Status"); s != "" && s != "0" {
		resp.Body.Close()
		tr.CloseIdleConnections()
		return nil, grpcError(method, s, resp.Header.Get("Grpc-Message"))
	}
	return &grpcStream{resp: resp, tr: tr, method: method}, nil
}

// grpcStream is a call's response: its body, then its status in the
// trailers.
type grpcStream struct {
	resp   *http.Response
	tr     *http.Transport
	method string
}

func (s *grpcStream) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	if err == io.EOF {
		if st := s.resp.Trailer.Get("Grpc-Status"); st != "" && st != "0" {
			return n, grpcError(s.method, st, s.resp.Trailer.Get("Grpc-Message"))
		}
	}
	return n, err
}

func (s *grpcStream) Close() error {
	err := s.resp.Body.Close()
	s.tr.CloseIdleConnections()
	return err
}

// grpcError reports a gRPC status, quoting at most maxErrorEcho bytes of
// containerd's message. Code 5 is NOT_FOUND.
func grpcError(method, code, msg string) error {
	if code == "5" {
		return fmt.Errorf("%w: %s: %.200q: %w", errGRPC, method, msg, ErrNoTarget)
	}
	return fmt.Errorf("%w: %s: status %.8s: %.200q", errGRPC, method, code, msg)
}

// grpcRead reads one length-prefixed message of at most limit bytes;
// io.EOF at the end of the stream. A compressed message is refused (none
// was asked for).
func grpcRead(r io.Reader, limit int) ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: cut message header", errGRPC)
		}
		return nil, err
	}
	if h[0] != 0 {
		return nil, fmt.Errorf("%w: compressed message", errGRPC)
	}
	n := binary.BigEndian.Uint32(h[1:])
	if int64(n) > int64(limit) {
		return nil, fmt.Errorf("%w: message of %d bytes: %w of %d bytes", errGRPC, n, errTooBig, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: cut message: %w", errGRPC, err)
	}
	return b, nil
}

// protoFields calls f with each field of the protobuf message b (its
// number, wire type and, for a length-delimited field, its bytes; for a
// varint, its value); a malformed message is an error.
func protoFields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, n uint64)) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("%w: %w", errGRPC, protowire.ParseError(l))
		}
		b = b[l:]
		switch typ {
		case protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return fmt.Errorf("%w: %w", errGRPC, protowire.ParseError(l))
			}
			f(num, typ, v, 0)
			b = b[l:]
		case protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return fmt.Errorf("%w: %w", errGRPC, protowire.ParseError(l))
			}
			f(num, typ, nil, v)
			b = b[l:]
		default:
			l := protowire.ConsumeFieldValue(num, typ, b)
			if l < 0 {
				return fmt.Errorf("%w: %w", errGRPC, protowire.ParseError(l))
			}
			b = b[l:]
		}
	}
	return nil
}

// parseTaskStart decodes an event envelope (containerd's
// events.v1.Envelope: namespace 2, topic 3, event 4, an Any of type_url 1
// and value 2) and returns NAMESPACE/ID of the container whose task
// started ("" for any other event or a malformed one).
func parseTaskStart(b []byte) string {
	var ns, topic string
	var any []byte
	if protoFields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		switch {
		case typ != protowire.BytesType:
		case num == 2:
			ns = string(v)
		case num == 3:
			topic = string(v)
		case num == 4:
			any = v
		}
	}) != nil || topic != "/tasks/start" {
		return ""
	}
	var typeURL string
	var value []byte
	if protoFields(any, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		switch {
		case typ != protowire.BytesType:
		case num == 1:
			typeURL = string(v)
		case num == 2:
			value = v
		}
	}) != nil || typeURL != taskStartType && !strings.HasSuffix(typeURL, "/"+taskStartType) {
		return ""
	}
	var id string
	if protoFields(value, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if num == 1 && typ == protowire.BytesType { // TaskStart.container_id
			id = string(v)
		}
	}) != nil {
		return ""
	}
	if !validContainerdRef(ns) || !validContainerdRef(id) {
		return ""
	}
	return ns + "/" + id
}

// validContainerdRef reports whether s can be a containerd namespace or
// id as deepwall uses them (a path element of the shim state).
func validContainerdRef(s string) bool {
	return s != "" && len(s) <= maxContainerID && s != "." && s != ".." && !strings.ContainsAny(s, "/\\") &&
		!strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// streamContainerdStarts reads containerd's task start events on socket
// until the stream ends or ctx is done.
func streamContainerdStarts(ctx context.Context, socket string, started func(runtime, name string)) error {
	req := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), taskStartFilter) // SubscribeRequest.filters
	s, err := grpcCall(ctx, socket, grpcSubscribe, "", req)
	if err != nil {
		return err
	}
	defer s.Close()
	for {
		msg, err := grpcRead(s, maxEnvelope)
		if err != nil {
			return err
		}
		if name := parseTaskStart(msg); name != "" {
			started("containerd", name)
		}
	}
}

// containerdMeta is what deepwall reads of a container from containerd's
// Containers/Get: its image and labels.
type containerdMeta struct {
	Image  string
	Labels map[string]string
}

// containerdGet asks containerd at socket for the container id in
// namespace ns.
func containerdGet(ctx context.Context, socket, ns, id string) (containerdMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerAPITimeout)
	defer cancel()
	s, err := grpcCall(ctx, socket, grpcGetContainer, ns, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), id))
	if err != nil {
		return containerdMeta{}, err
	}
	defer s.Close()
	msg, err := grpcRead(s, maxGRPCMessage)
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: %s: no answer", errGRPC, grpcGetContainer)
		}
		return containerdMeta{}, err
	}
	return parseContainerdContainer(msg, id)
}

// parseContainerdContainer decodes a GetContainerResponse (container 1:
// id 1, labels 2 as map entries of key 1 and value 2, image 3) about id.
// Labels past maxLabels, or longer than maxLabelLen, refuse the answer.
func parseContainerdContainer(b []byte, id string) (containerdMeta, error) {
	var c []byte
	if err := protoFields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if num == 1 && typ == protowire.BytesType {
			c = v
		}
	}); err != nil {
		return containerdMeta{}, err
	}
	info := containerdMeta{Labels: map[string]string{}}
	var gotID string
	var bad error
	err := protoFields(c, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if typ != protowire.BytesType {
			return
		}
		switch num {
		case 1:
			gotID = string(v)
		case 3:
			info.Image = string(v)
		case 2:
			var k, val string
			if err := protoFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
				if typ == protowire.BytesType && num == 1 {
					k = string(v)
				} else if typ == protowire.BytesType && num == 2 {
					val = string(v)
				}
			}); err != nil {
				bad = err
			}
			if len(info.Labels) >= maxLabels || len(k) > maxLabelLen || len(val) > maxLabelLen {
				bad = fmt.Errorf("%w: container %.64q: more than %d labels or one longer than %d bytes", errGRPC, id, maxLabels, maxLabelLen)
			}
			info.Labels[k] = val
		}
	})
	switch {
	case err != nil:
		return containerdMeta{}, err
	case bad != nil:
		return containerdMeta{}, bad
	case gotID != id: // an answer about another container is not believed
		return containerdMeta{}, fmt.Errorf("%w: asked for container %.64q, answered %.64q", errGRPC, id, gotID)
	case len(info.Image) > maxContainerID:
		return containerdMeta{}, fmt.Errorf("%w: container %.64q: image longer than %d bytes", errGRPC, id, maxContainerID)
	}
	return info, nil
}

// containerdInfo asks containerd's API, when its socket is there, for
// the image and labels of the container id in namespace ns; false when
// it cannot say (no socket, an error: the shim state alone names the
// container).
func (r Resolver) containerdInfo(ctx context.Context, ns, id string) (containerdMeta, bool) {
	if r.ContainerdSocket == "" {
		return containerdMeta{}, false
	}
	key := ns + "/" + id
	if m, ok := r.ctrd.get(key); ok {
		return m, true
	}
	if _, err := os.Stat(r.ContainerdSocket); err != nil {
		return containerdMeta{}, false
	}
	m, err := containerdGet(ctx, r.ContainerdSocket, ns, id)
	if err != nil {
		return containerdMeta{}, false
	}
	r.ctrd.put(key, m)
	return m, true
}
