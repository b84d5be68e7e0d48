package resolve

import (
	"strconv"
	"testing"
)

// TestMetaCache: answers are remembered until their container is no
// longer listed or its task starts again; a nil cache remembers nothing.
func TestMetaCache(t *testing.T) {
	var none *metaCache
	none.put("k8s.io/a", containerdMeta{Image: "x"})
	if _, ok := none.get("k8s.io/a"); ok {
		t.Fatal("nil cache remembered")
	}
	c := Resolver{}.WithContainerdCache().ctrd
	c.put("k8s.io/a", containerdMeta{Image: "a"})
	c.put("k8s.io/b", containerdMeta{Image: "b"})
	if m, ok := c.get("k8s.io/a"); !ok || m.Image != "a" {
		t.Fatalf("get a: %v %v", m, ok)
	}
	c.keep(map[string]bool{"k8s.io/a": true})
	if _, ok := c.get("k8s.io/b"); ok {
		t.Error("b kept after it was no longer listed")
	}
	c.forget("k8s.io/a")
	if _, ok := c.get("k8s.io/a"); ok {
		t.Error("a kept after its task started again")
	}
	for i := range maxListed + 5 {
		c.put(strconv.Itoa(i), containerdMeta{})
	}
	if len(c.m) > maxListed {
		t.Errorf("%d entries, at most %d", len(c.m), maxListed)
	}
}
