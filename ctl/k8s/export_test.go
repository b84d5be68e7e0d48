package k8s

// A pod's Blocked Events at once and the time of one more, for the
// end-to-end test's bound.
const (
	BlockBurst = blockBurst
	BlockEvery = blockEvery
)
