// Package eve owns deepwall's verdict log: the event schema (Suricata's
// EVE JSON field names and types, so that tools reading EVE read it
// unchanged; evetest checks it against Suricata's published schema), the
// flow's Community ID (communityid), the writer the agent emits into
// (rotating, never blocking the packet path) with its outputs beside the
// file (syslog, a unix stream socket), and the reader `deepwall logs`
// tails and follows across rotations.
//
// It imports nothing but the standard library and communityid: the DPI
// engine builds its events with these types, and the control plane reads
// them back.
package eve
