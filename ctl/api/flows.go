package api

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/deepwall/deepwall/rules"
)

// ErrInvalid is a request the contract refuses: a malformed filter, body
// or argument. Its text is "bad request", as callers and the audit log
// have always read it; the agent answers it with status 400.
var ErrInvalid = errors.New("bad request")

// maxFilterName bounds a container name in a flow filter (a container
// name in rules is shorter).
const maxFilterName = 256

// Limits of GET /v1/flows.
const (
	DefaultFlowLimit = 1000
	MaxFlowLimit     = 100000
)

// FlowFilter selects flows for `deepwall flows`. Zero fields match all.
type FlowFilter struct {
	Proto   uint8      // IP protocol
	Addr    netip.Addr // either endpoint
	Port    uint16     // either endpoint
	Verdict string     // inspect | pass | drop
	App     string     // application protocol
	// Container is a protected container's name: flows with one of its
	// addresses at either end.
	Container string
	Limit     int // rows returned (the total is still counted)
}

// FlowVerdicts are the verdicts a flow filter selects.
var FlowVerdicts = []string{"inspect", "pass", "drop"}

// ParseFlowFilter reads a filter from query parameters proto, ip, port,
// verdict, app, container and limit.
func ParseFlowFilter(q url.Values) (FlowFilter, error) {
	f := FlowFilter{Limit: DefaultFlowLimit}
	if v := q.Get("proto"); v != "" {
		p, err := ParseProto(v)
		if err != nil {
			return f, err
		}
		f.Proto = p
	}
	if v := q.Get("ip"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return f, fmt.Errorf("%w: ip %q: %v", ErrInvalid, v, err)
		}
		f.Addr = a.Unmap()
	}
	if v := q.Get("port"); v != "" {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return f, fmt.Errorf("%w: port %q is not 1 to 65535", ErrInvalid, v)
		}
		f.Port = uint16(p)
	}
	if v := q.Get("verdict"); v != "" {
		if !slices.Contains(FlowVerdicts, v) {
			return f, fmt.Errorf("%w: verdict %q is not one of %s", ErrInvalid, v, strings.Join(FlowVerdicts, ", "))
		}
		f.Verdict = v
	}
	f.App = q.Get("app")
	f.Container = q.Get("container")
	if len(f.Container) > maxFilterName {
		return f, fmt.Errorf("%w: container name of %d bytes, at most %d", ErrInvalid, len(f.Container), maxFilterName)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxFlowLimit {
			return f, fmt.Errorf("%w: limit %q is not 1 to %d", ErrInvalid, v, MaxFlowLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// Query renders the filter as query parameters (the CLI's side).
func (f FlowFilter) Query() url.Values {
	q := url.Values{}
	if f.Proto != 0 {
		q.Set("proto", strconv.Itoa(int(f.Proto)))
	}
	if f.Addr.IsValid() {
		q.Set("ip", f.Addr.String())
	}
	if f.Port != 0 {
		q.Set("port", strconv.Itoa(int(f.Port)))
	}
	if f.Verdict != "" {
		q.Set("verdict", f.Verdict)
	}
	if f.App != "" {
		q.Set("app", f.App)
	}
	if f.Container != "" {
		q.Set("container", f.Container)
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// ParseProto reads a protocol as filters and learned rules name it: tcp,
// udp, icmp, icmpv6 (ipv6-icmp), sctp or a number.
func ParseProto(v string) (uint8, error) {
	switch strings.ToLower(v) {
	case "tcp":
		return rules.ProtoTCP, nil
	case "udp":
		return rules.ProtoUDP, nil
	case "icmp":
		return 1, nil
	case "icmpv6", "ipv6-icmp":
		return 58, nil
	case "sctp":
		return rules.ProtoSCTP, nil
	}
	n, err := strconv.ParseUint(v, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("%w: proto %q is not tcp, udp, icmp, icmpv6, sctp or a number", ErrInvalid, v)
	}
	return uint8(n), nil
}
