package agent

import (
	"reflect"
	"slices"
)

// addStats adds every protected pair's counters to s, so that status and
// the metrics count all the agent's pairs together (deepwall ports has
// them per container). Like the kernel table it reads the pairs without
// the protector's lock: a protect or unprotect in progress does not hold
// up a scrape.
func (p *protector) addStats(s *snapshot) {
	ports := p.portsOf()
	if len(ports) == 0 {
		return
	}
	s.pair.Workers = slices.Clone(s.pair.Workers) // never add into a pair's own slice
	for _, pp := range ports {
		if pp.timed != nil {
			pp.timed.addTo(&s.latency)
		}
		pair := pp.pair
		if pair == nil {
			continue
		}
		ps, ks, kerr := pair.Stats()
		addCounters(&s.pair.Inner, &ps.Inner)
		addCounters(&s.pair.Outer, &ps.Outer)
		addCounters(&s.pair.Reaper, &ps.Reaper)
		s.pair.TxKicks += ps.TxKicks
		s.pair.InFlight += ps.InFlight
		for i := range ps.Workers {
			if i < len(s.pair.Workers) {
				addCounters(&s.pair.Workers[i], &ps.Workers[i])
			} else {
				s.pair.Workers = append(s.pair.Workers, ps.Workers[i])
			}
		}
		if kerr != nil {
			if s.kerr == nil {
				s.kerr = kerr
			}
			continue
		}
		addCounters(&s.kernel, &ks)
	}
}

// addCounters adds every integer field of *src to *dst (same struct type),
// nested structs and arrays included: counter structs grow fields, and a
// sum that names them would silently miss new ones.
func addCounters[T any](dst, src *T) {
	addValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem())
}

func addValue(d, s reflect.Value) {
	switch d.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if d.CanSet() {
			d.SetUint(d.Uint() + s.Uint())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if d.CanSet() {
			d.SetInt(d.Int() + s.Int())
		}
	case reflect.Struct:
		for i := range d.NumField() {
			addValue(d.Field(i), s.Field(i))
		}
	case reflect.Array:
		for i := range d.Len() {
			addValue(d.Index(i), s.Index(i))
		}
	}
}
