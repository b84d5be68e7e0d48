// Package eve owns deepwall's verdict log: the event schema (Suricata's
// EVE JSON field names, so that tools reading EVE read it unchanged), the
// writer the agent emits into (rotating, never blocking the packet path)
// and the reader `deepwall logs` tails and follows across rotations.
//
// It imports nothing but the standard library: the DPI engine builds its
// events with these types, and the control plane reads them back.
package eve
