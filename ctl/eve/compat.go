package eve

import "encoding/json"

// Logs written before deepwall's own fields moved into their sections'
// "deepwall" objects (to validate against Suricata's schema) had them
// beside Suricata's; `deepwall logs` reads a rotated file of that time
// too. These readers take either place.

// UnmarshalJSON implements json.Unmarshaler.
func (a *Alert) UnmarshalJSON(b []byte) error {
	type plain Alert // without this method
	var v struct {
		plain
		Field      *string  `json:"field"`
		Matched    *string  `json:"matched"`
		Score      *int     `json:"score"`
		Rules      []uint32 `json:"rules"`
		WouldBlock *bool    `json:"would_block"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*a = Alert(v.plain)
	if v.Field != nil {
		a.Field = *v.Field
	}
	if v.Matched != nil {
		a.Matched = *v.Matched
	}
	if v.Score != nil {
		a.Score = *v.Score
	}
	if v.Rules != nil {
		a.Rules = v.Rules
	}
	if v.WouldBlock != nil {
		a.WouldBlock = *v.WouldBlock
	}
	if len(a.Rules) == 0 {
		// An empty list is no list: written back it would make an empty
		// "deepwall" object, which the schema refuses.
		a.Rules = nil
	}
	return nil
}

// UnmarshalJSON implements json.Unmarshaler. Suricata's own flow.bypassed
// (an object of counters) is ignored.
func (f *FlowStats) UnmarshalJSON(b []byte) error {
	type plain FlowStats
	var v struct {
		plain
		Bypassed json.RawMessage `json:"bypassed"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = FlowStats(v.plain)
	if string(v.Bypassed) == "true" {
		f.Bypassed = true
	}
	return nil
}
