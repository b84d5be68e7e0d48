package dpi

import "github.com/deepwall/deepwall/ctl/eve"

// Event is the verdict event the engine emits (Config.Emit); its schema
// is package eve's.
//
// Deprecated: use eve.Event. It stays until bench/detect, the last user
// outside dpi, names eve.Event itself.
type Event = eve.Event
