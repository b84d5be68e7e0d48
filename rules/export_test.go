package rules

// The pack's evaluation tests are external (package rules_test): they use
// ruletest, which imports this package. These are the internal test
// helpers they share with the tests in here.
var (
	CompiledPack   = compiledPack
	RuleIDs        = ruleIDs
	Scratch        = scratch
	BrowserHeaders = browserHeaders
)
