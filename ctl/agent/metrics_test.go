package agent

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/deepwall/deepwall/ctl/api"
)

// TestContainerMetricsBounded: the first maxMetricContainers protected
// containers by name have series of their own, the others are summed as
// _other; pending protections and selectors have none.
func TestContainerMetricsBounded(t *testing.T) {
	m := newMetricsCollector(&Agent{})
	var ports []api.PortStatus
	for i := range maxMetricContainers + 6 {
		ports = append(ports, api.PortStatus{Name: fmt.Sprintf("web-%03d", i), Inner: "veth", Counters: api.PortCount{Inspected: 1, Dropped: 2}})
	}
	ports = append(ports, api.PortStatus{Name: "zz-pending", State: "pending"})
	ch := make(chan prometheus.Metric, 1024)
	m.collectContainers(ch, ports)
	close(ch)
	inspected := map[string]float64{}
	var protected float64
	for metric := range ch {
		var d dto.Metric
		if err := metric.Write(&d); err != nil {
			t.Fatal(err)
		}
		if d.Gauge != nil {
			protected = d.Gauge.GetValue()
			continue
		}
		labels := map[string]string{}
		for _, l := range d.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["path"] == "inspected" {
			inspected[labels["container"]] = d.Counter.GetValue()
		}
	}
	if len(inspected) != maxMetricContainers+1 || inspected["web-000"] != 1 || inspected[otherContainers] != 6 ||
		inspected[fmt.Sprintf("web-%03d", maxMetricContainers)] != 0 || protected != maxMetricContainers+6 {
		t.Errorf("%d series, _other %v, protected %v", len(inspected), inspected[otherContainers], protected)
	}
	if _, ok := inspected["zz-pending"]; ok {
		t.Error("a pending protection has a series")
	}
}
