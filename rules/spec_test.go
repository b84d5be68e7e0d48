package rules

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSpecKeys checks that MatchSpec and CompareSpec write exactly the
// keys the parser reads.
func TestSpecKeys(t *testing.T) {
	for _, tc := range []struct {
		spec any
		keys []string
	}{
		{MatchSpec{}, matchKeys},
		{CompareSpec{}, compareKeys},
	} {
		typ := reflect.TypeOf(tc.spec)
		var tags []string
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			tags = append(tags, name)
		}
		slices.Sort(tags)
		want := slices.Sorted(slices.Values(tc.keys))
		if !slices.Equal(tags, want) {
			t.Errorf("%s writes %v, the parser reads %v", typ.Name(), tags, want)
		}
	}
}
