package agent

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/xdp"
)

// maxKernelFlows bounds the kernel entries read for one listing.
const maxKernelFlows = 1 << 20

// matchFlow reports whether row r of a flow passes f.
func matchFlow(f api.FlowFilter, only []netip.Addr, r *api.FlowRow, proto uint8, client, server netip.AddrPort) bool {
	if f.Proto != 0 && proto != f.Proto {
		return false
	}
	if f.Container != "" && !slices.Contains(only, client.Addr().Unmap()) && !slices.Contains(only, server.Addr().Unmap()) {
		return false
	}
	if f.Addr.IsValid() && client.Addr().Unmap() != f.Addr && server.Addr().Unmap() != f.Addr {
		return false
	}
	if f.Port != 0 && client.Port() != f.Port && server.Port() != f.Port {
		return false
	}
	if f.Verdict != "" && r.Verdict != f.Verdict {
		return false
	}
	if f.App != "" && r.App != f.App {
		return false
	}
	return true
}

func kernelVerdict(v xdp.Verdict) string {
	switch v {
	case xdp.VerdictAllow:
		return "pass"
	case xdp.VerdictDrop:
		return "drop"
	}
	return "inspect"
}

// mergeFlows joins the engine's flows with the kernel's flow map: a flow
// the kernel carries (ALLOW/DROP) is bypassed and its fast-path counters
// add to the engine's; kernel entries the engine does not know are listed
// from the kernel alone. Rows come sorted by age, oldest first. mono and
// wall are the current time on the kernel's clock and the wall clock;
// only are the addresses of f.Container.
func mergeFlows(eng dpiEngine, kern flowTable, f api.FlowFilter, only []netip.Addr, mono int64, wall time.Time) api.FlowList {
	type kentry struct {
		v    xdp.FlowValue
		seen bool
	}
	kflows := map[xdp.FlowKey]*kentry{}
	if kern != nil {
		_ = kern.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
			kflows[k] = &kentry{v: v}
			return len(kflows) < maxKernelFlows
		})
	}
	nsSecs := func(ns int64) float64 { return max(float64(ns)/1e9, 0) }
	var out api.FlowList
	add := func(r api.FlowRow, proto uint8, client, server netip.AddrPort) {
		if !matchFlow(f, only, &r, proto, client, server) {
			return
		}
		out.Total++
		out.Flows = append(out.Flows, r)
	}
	if eng != nil {
		eng.Flows(func(fi dpi.FlowInfo) bool {
			r := api.FlowRow{Proto: xdp.ProtoName(fi.Proto), Client: fi.Client.String(), Server: fi.Server.String(),
				App: fi.App, Verdict: fi.Verdict, RuleID: fi.RuleID, Bypassed: fi.Bypassed,
				PktsToServer: fi.Packets[0], PktsToClient: fi.Packets[1],
				BytesToServer: fi.Bytes[0], BytesToClient: fi.Bytes[1],
				AgeSecs: max(wall.Sub(fi.Start).Seconds(), 0), IdleSecs: max(wall.Sub(fi.Last).Seconds(), 0)}
			if r.Verdict == "" {
				r.Verdict = "inspect"
			}
			if ke := kflows[fi.Key]; ke != nil {
				ke.seen = true
				// The kernel counts fast-path packets only: they add to the
				// engine's, also for an entry revoked back to INSPECT.
				ts, tc := toServerDir(fi.Key, fi.Client)
				r.PktsToServer += ke.v.Packets[ts]
				r.PktsToClient += ke.v.Packets[tc]
				r.BytesToServer += ke.v.Bytes[ts]
				r.BytesToClient += ke.v.Bytes[tc]
				if ke.v.Verdict != xdp.VerdictInspect {
					r.Bypassed, r.Verdict = true, kernelVerdict(ke.v.Verdict)
					if ke.v.RuleID != 0 {
						r.RuleID = ke.v.RuleID
					}
					r.IdleSecs = min(r.IdleSecs, nsSecs(mono-int64(ke.v.LastSeen)))
				} else {
					r.Bypassed = false
				}
			}
			add(r, fi.Proto, fi.Client, fi.Server)
			return true
		})
	}
	for k, ke := range kflows {
		if ke.seen {
			continue
		}
		// The engine does not know this flow (an earlier agent's): which
		// end is the client is unknown, so lo is shown first.
		lo, hi := k.Lo(), k.Hi()
		r := api.FlowRow{Proto: xdp.ProtoName(k.Proto), Client: lo.String(), Server: hi.String(),
			Verdict: kernelVerdict(ke.v.Verdict), Bypassed: ke.v.Verdict != xdp.VerdictInspect, RuleID: ke.v.RuleID,
			PktsToServer: ke.v.Packets[xdp.FromLo], PktsToClient: ke.v.Packets[xdp.FromHi],
			BytesToServer: ke.v.Bytes[xdp.FromLo], BytesToClient: ke.v.Bytes[xdp.FromHi],
			IdleSecs: nsSecs(mono - int64(ke.v.LastSeen))}
		add(r, k.Proto, lo, hi)
	}
	slices.SortStableFunc(out.Flows, func(a, b api.FlowRow) int {
		if c := cmp.Compare(b.AgeSecs, a.AgeSecs); c != 0 {
			return c
		}
		return cmp.Compare(a.Client+" "+a.Server, b.Client+" "+b.Server)
	})
	if f.Limit > 0 && len(out.Flows) > f.Limit {
		out.Flows, out.Truncated = out.Flows[:f.Limit], true
	}
	if out.Flows == nil {
		out.Flows = []api.FlowRow{}
	}
	return out
}

// toServerDir returns the kernel counter indexes of the to-server and
// to-client directions of a flow whose client is client.
func toServerDir(k xdp.FlowKey, client netip.AddrPort) (toServer, toClient xdp.Direction) {
	if k.Lo() == client || (k.Lo().Addr().Unmap() == client.Addr().Unmap() && k.Lo().Port() == client.Port()) {
		return xdp.FromLo, xdp.FromHi
	}
	return xdp.FromHi, xdp.FromLo
}
