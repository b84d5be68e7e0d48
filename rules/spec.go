package rules

// MatchSpec is a condition as a rule file writes it, the keys of match:,
// for programs that write rule files (the Core Rule Set translator):
// encoding it as YAML gives a condition Parse reads. Its keys are the
// parser's (TestSpecKeys keeps them in step), so a key added to the
// language is added here and nowhere else.
type MatchSpec struct {
	Field      string       `yaml:"field,omitempty"`
	Fields     []string     `yaml:"fields,omitempty"`
	Regex      string       `yaml:"regex,omitempty"`
	Phrases    []string     `yaml:"phrases,omitempty,flow"`
	Detect     string       `yaml:"detect,omitempty"`
	Count      string       `yaml:"count,omitempty"`
	Not        bool         `yaml:"not,omitempty"`
	Flags      []string     `yaml:"flags,omitempty,flow"`
	Transforms []string     `yaml:"transforms,omitempty,flow"`
	MultiMatch bool         `yaml:"multi_match,omitempty"`
	Validate   string       `yaml:"validate,omitempty"`
	Except     []string     `yaml:"except,omitempty,flow"`
	Names      []string     `yaml:"name,omitempty,flow"`
	NameRegex  string       `yaml:"name_regex,omitempty"`
	Compare    *CompareSpec `yaml:"compare,omitempty,flow"`
}

// CompareSpec is a condition's compare: as a rule file writes it.
type CompareSpec struct {
	Group     int    `yaml:"group"`
	Op        string `yaml:"op"`
	Field     string `yaml:"field,omitempty"`
	WithGroup int    `yaml:"with_group,omitempty"`
	Not       bool   `yaml:"not,omitempty"`
}
