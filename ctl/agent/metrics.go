package agent

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/deepwall/deepwall/ctl/api"
)

// metricsCollector exports the agent's counters to Prometheus. It reads
// one snapshot per scrape: the packet path carries no Prometheus code.
type metricsCollector struct {
	a *Agent

	packets, bytes, verdicts, frames, ruleHits, drops *prometheus.Desc
	queueDepth, latency, events, rotations            *prometheus.Desc
	rulesVersion, flows, uptime, h2Streams            *prometheus.Desc
	outputs, workloads, ruleChanges                   *prometheus.Desc
	ctrPackets, ctrProtected                          *prometheus.Desc
}

// maxMetricContainers bounds the series per-container metrics make: the
// first this many protected containers by name have series of their
// own, the others' counters are summed under container="_other" (a
// container name in rules cannot begin with "_"), so that a host with
// thousands of short-lived containers does not swell the scrape. A
// container keeps its series across restarts (its name is stable).
const maxMetricContainers = 64

// otherContainers is the container label of the summed series.
const otherContainers = "_other"

func newMetricsCollector(a *Agent) *metricsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("deepwall_"+name, help, labels, nil)
	}
	return &metricsCollector{
		a:            a,
		packets:      d("packets_total", "Packets by path: fast_allow and fast_drop (kernel fast path), user (sent to AF_XDP for inspection), fail_open, fail_closed, non_ip, acl_drop.", "path"),
		bytes:        d("bytes_total", "Bytes by path: fast (kernel fast path, whole frames) and user (inspected in user space).", "path"),
		verdicts:     d("verdicts_total", "Layer-7 verdicts: alert (a rule alerted) and block (a rule blocked the flow).", "verdict"),
		frames:       d("frames_judged_total", "Frames judged in user space, by action (forward, drop).", "action"),
		ruleHits:     d("rule_hits_total", "Logged hits per rule.", "rule_id"),
		drops:        d("drops_total", "Dropped packets by reason.", "reason"),
		queueDepth:   d("worker_queue_depth", "Batches waiting for each inspection worker.", "worker"),
		latency:      d("inspection_latency_seconds", "Time the DPI engine spends on one frame (one frame in 16 is timed)."),
		events:       d("events_total", "Verdict log events: written, or dropped because the writer fell behind.", "state"),
		rotations:    d("event_log_rotations_total", "Verdict log rotations."),
		rulesVersion: d("rules_version", "Version number of the running rule set."),
		flows:        d("flows", "Flows the DPI engine tracks."),
		h2Streams:    d("http2_streams_total", "HTTP/2 streams inspected, by kind: http2 (every stream), grpc (the gRPC ones among them) and reset (those blocked alone, the connection kept).", "kind"),
		uptime:       d("uptime_seconds", "Seconds since the agent started."),
		workloads:    d("workload_events_total", "Events per protected workload (container name; _pair for the --inner/--outer pair; _other past 64 workloads): flow (flows ended), alert, block, drop.", "workload", "event"),
		ruleChanges:  d("rule_changes_total", "Rule set loads and changes recorded in the audit log, by result: ok (applied or unchanged), refused (invalid set, forbidden caller, failed swap).", "result"),
		outputs:      d("output_events_total", "Events sent to an output beside the file (--syslog, --event-socket), or dropped because it fell behind or was away.", "output", "state"),
		ctrPackets: d("container_packets_total", "Packets of each protected container's pair by path: inspected, forwarded and dropped (user space), "+
			"fast_allow, fast_drop and acl_drop (kernel), to_user. At most 64 containers by name have series; the others are summed as container=\"_other\". "+
			"A counter starts again when its container is protected again (restart, re-creation).", "container", "path"),
		ctrProtected: d("containers_protected", "Protected containers with a pair now; containers_protected minus the named series is how many _other sums."),
	}
}

// Describe implements prometheus.Collector.
func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

// Collect implements prometheus.Collector.
func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := m.a.snapshot()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	k := s.kernel
	counter(m.packets, k.FastAllow, "fast_allow")
	counter(m.packets, k.FastDrop, "fast_drop")
	counter(m.packets, k.ToUser, "user")
	counter(m.packets, k.FailOpen, "fail_open")
	counter(m.packets, k.FailClosed, "fail_closed")
	counter(m.packets, k.NonIP, "non_ip")
	counter(m.packets, k.ACLDrop, "acl_drop")
	counter(m.bytes, s.fast, "fast")
	counter(m.bytes, s.engine.Bytes, "user")
	counter(m.verdicts, s.engine.Alerts, "alert")
	counter(m.verdicts, s.engine.Blocks, "block")
	var fwd, drop uint64
	for i, w := range s.pair.Workers {
		fwd += w.Forwarded
		drop += w.Dropped
		gauge(m.queueDepth, float64(w.QueueDepth), strconv.Itoa(i))
	}
	counter(m.frames, fwd, "forward")
	counter(m.frames, drop, "drop")
	for id, n := range s.engine.Signatures {
		counter(m.ruleHits, n, strconv.FormatUint(uint64(id), 10))
	}
	for reason, n := range s.drops() {
		counter(m.drops, n, reason)
	}
	ch <- prometheus.MustNewConstHistogram(m.latency, s.latency.n, s.latency.sum.Seconds(), s.latency.cumulative())
	counter(m.events, s.events.Written, "written")
	counter(m.events, s.events.Dropped, "dropped")
	counter(m.rotations, s.events.Rotations)
	m.a.wl.each(func(name, event string, n uint64) { counter(m.workloads, n, name, event) })
	counter(m.ruleChanges, m.a.rules.changes[0].Load(), "ok")
	counter(m.ruleChanges, m.a.rules.changes[1].Load(), "refused")
	for _, o := range s.events.Outputs {
		counter(m.outputs, o.Sent, o.Name, "sent")
		counter(m.outputs, o.Dropped, o.Name, "dropped")
	}
	if st := m.a.rules.current(); st != nil {
		gauge(m.rulesVersion, float64(st.version.Number))
	}
	gauge(m.flows, float64(s.engine.Flows))
	counter(m.h2Streams, s.engine.H2Streams, "http2")
	counter(m.h2Streams, s.engine.GRPCStreams, "grpc")
	counter(m.h2Streams, s.engine.H2StreamResets, "reset")
	gauge(m.uptime, time.Since(m.a.started).Seconds())
	if m.a.prot != nil {
		m.collectContainers(ch, m.a.prot.Ports().Ports)
	}
}

// collectContainers exports each protected container's pair counters,
// bounded by maxMetricContainers.
func (m *metricsCollector) collectContainers(ch chan<- prometheus.Metric, ports []api.PortStatus) {
	var other api.PortCount
	n := 0
	for _, p := range ports { // sorted by name
		if p.Inner == "" { // a pending protection or a selector: no pair
			continue
		}
		n++
		if n > maxMetricContainers {
			c := &p.Counters
			other.Inspected, other.Forwarded, other.Dropped = other.Inspected+c.Inspected, other.Forwarded+c.Forwarded, other.Dropped+c.Dropped
			other.FastAllow, other.FastDrop, other.ACLDrop = other.FastAllow+c.FastAllow, other.FastDrop+c.FastDrop, other.ACLDrop+c.ACLDrop
			other.ToUser += c.ToUser
			continue
		}
		m.containerCounters(ch, p.Name, p.Counters)
	}
	if n > maxMetricContainers {
		m.containerCounters(ch, otherContainers, other)
	}
	ch <- prometheus.MustNewConstMetric(m.ctrProtected, prometheus.GaugeValue, float64(n))
}

func (m *metricsCollector) containerCounters(ch chan<- prometheus.Metric, name string, c api.PortCount) {
	for _, v := range []struct {
		path string
		n    uint64
	}{{"inspected", c.Inspected}, {"forwarded", c.Forwarded}, {"dropped", c.Dropped}, {"fast_allow", c.FastAllow},
		{"fast_drop", c.FastDrop}, {"acl_drop", c.ACLDrop}, {"to_user", c.ToUser}} {
		ch <- prometheus.MustNewConstMetric(m.ctrPackets, prometheus.CounterValue, float64(v.n), name, v.path)
	}
}

// newMetricsServer serves /metrics from the agent's own registry (no Go
// runtime or process collectors: what is exported is deepwall's).
func newMetricsServer(a *Agent) *http.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetricsCollector(a))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute}
}
