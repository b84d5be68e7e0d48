package resolve

import "sync"

// metaCache remembers containerd's answers about its containers' image
// and labels (NAMESPACE/ID → containerdMeta), so that a selector's pass
// every second asks containerd only about containers it has not seen. An
// entry goes when its container is no longer listed or its task starts
// again (re-created under the same id: it may have new labels). A nil
// cache remembers nothing.
type metaCache struct {
	mu sync.Mutex
	m  map[string]containerdMeta
}

// WithContainerdCache returns r with a cache of containerd's container
// metadata, for a long-lived resolver (the agent's protector).
func (r Resolver) WithContainerdCache() Resolver {
	r.ctrd = &metaCache{m: map[string]containerdMeta{}}
	return r
}

func (c *metaCache) get(key string) (containerdMeta, bool) {
	if c == nil {
		return containerdMeta{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.m[key]
	return m, ok
}

// put remembers m, within maxListed entries (the most a pass lists).
func (c *metaCache) put(key string, m containerdMeta) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) < maxListed {
		c.m[key] = m
	}
}

func (c *metaCache) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// keep drops every entry not in listed.
func (c *metaCache) keep(listed map[string]bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !listed[k] {
			delete(c.m, k)
		}
	}
}
