package xdp

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestLayout compares the package's typed structs with the types bpf2go
// generated from the program's BTF (-type): same size, and the same fields
// at the same offsets with the same sizes.
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ours, gen any
	}{
		{"flow_key", FlowKey{}, deepwallFlowKey{}},
		{"flow_value", FlowValue{}, deepwallFlowValue{}},
		{"acl_bits", aclBits{}, deepwallAclBits{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ot, gt := reflect.TypeOf(tc.ours), reflect.TypeOf(tc.gen)
			if ot.Size() != gt.Size() {
				t.Fatalf("size %d, C has %d", ot.Size(), gt.Size())
			}
			of, gf := layoutOf(ot), layoutOf(gt)
			if !reflect.DeepEqual(of, gf) {
				t.Errorf("fields (offset:size)\n ours %v\n C    %v", of, gf)
			}
		})
	}
	if unsafe.Sizeof(FlowKey{}) != 40 || unsafe.Sizeof(FlowValue{}) != 48 {
		t.Errorf("flow_key %d bytes, flow_value %d bytes", unsafe.Sizeof(FlowKey{}), unsafe.Sizeof(FlowValue{}))
	}
}

// layoutOf lists "offset:size" of every field with a size (bpf2go adds a
// zero-size structs.HostLayout marker), or of the elements of an array.
func layoutOf(t reflect.Type) []string {
	var out []string
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Type.Size() == 0 {
				continue
			}
			if f.Type.Kind() == reflect.Array && t.NumField() <= 2 {
				// A struct wrapping one array (acl_bits) compares with a
				// bare array type.
				return layoutOf(f.Type)
			}
			out = append(out, strconv.Itoa(int(f.Offset))+":"+strconv.Itoa(int(f.Type.Size())))
		}
	case reflect.Array:
		for i := range t.Len() {
			out = append(out, strconv.Itoa(i*int(t.Elem().Size()))+":"+strconv.Itoa(int(t.Elem().Size())))
		}
	}
	return out
}

// TestHeaderConstants checks every numeric #define of bpf/deepwall.h
// against the Go constant of the same meaning, so neither side can change
// alone. A new #define must be added here.
func TestHeaderConstants(t *testing.T) {
	goValues := map[string]int{
		"MAX_QUEUES": MaxQueues, "MAX_SLOTS": MaxSlots,
		"DEFAULT_MAX_FLOWS": DefaultMaxFlows, "MAX_VLAN_DEPTH": MaxVLANDepth,
		"MAX_IPV6_EXT": MaxIPv6ExtHeaders, "MAX_ACL_RULES": MaxACLRules,
		"MAX_ACL_PREFIXES": MaxACLPrefixes, "MAX_PORT_CLASSES": MaxPortClasses,
		"ACL_GENS": aclGens, "ACL_PROTOS": aclProtos, "ACL_PORTS": aclPorts,
		"ACL_LPM_ANY": aclLPMAny, "ACL_LPM_BASE": aclLPMBase,
		"ACL_FAMILY_V4": aclFamilyV4, "ACL_FAMILY_V6": aclFamilyV6,
		"VERDICT_INSPECT": int(VerdictInspect), "VERDICT_ALLOW": int(VerdictAllow), "VERDICT_DROP": int(VerdictDrop),
		"FLOW_FLAG_CLOSING": int(FlowFlagClosing), "ACL_ALLOW": int(ACLAllow), "ACL_DENY": int(ACLDeny),
		"CNT_FAST_ALLOW": cntFastAllow, "CNT_FAST_DROP": cntFastDrop, "CNT_ACL_DROP": cntACLDrop,
		"CNT_TO_USER": cntToUser, "CNT_FAIL_OPEN": cntFailOpen, "CNT_FAIL_CLOSED": cntFailClosed,
		"CNT_NON_IP": cntNonIP, "CNT_PARSE_ERR": cntParseErr, "CNT_UNCONFIGURED": cntUnconfigured,
		"CNT_REDIRECT_ERR": cntRedirectErr, "CNT_FRAGMENT": cntFragment, "CNT_HDR_LIMIT": cntHdrLimit,
		"CNT_FLOW_MISS": cntFlowMiss, "CNT_QUEUE_RANGE": cntQueueRange, "CNT_SYN_REOPEN": cntSynReopen, "CNT_MAX": cntMax,
	}
	f, err := os.Open("bpf/deepwall.h")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	def := regexp.MustCompile(`^#define\s+([A-Z0-9_]+)\s+(\d+)\b`)
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := def.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		c, _ := strconv.Atoi(m[2])
		g, ok := goValues[m[1]]
		switch {
		case !ok:
			t.Errorf("%s = %d in deepwall.h has no Go counterpart in this test", m[1], c)
		case g != c:
			t.Errorf("%s = %d in deepwall.h, %d in Go", m[1], c, g)
		}
		seen[m[1]] = true
	}
	for name := range goValues {
		if !seen[name] {
			t.Errorf("%s not found in deepwall.h", name)
		}
	}
	if n := len(new(Stats).counters()); n != reflect.TypeOf(Stats{}).NumField() {
		t.Errorf("Stats has %d fields, %d counters", reflect.TypeOf(Stats{}).NumField(), n)
	}
}
