package reasm

// pool is a worker's budget of buffer memory: fixed-size blocks cut from
// 64 KiB slabs that are allocated on demand up to the budget and then
// recycled through a free list. Blocks and out-of-order segment records
// are named by int32 ids (0 is nil) rather than pointers, so the garbage
// collector never scans the buffers and the Streams that refer to them.
type pool struct {
	slabs   [][]byte
	link    []int32 // per block: next block of a chain, or of the free list
	free    int32
	blocks  int32 // blocks cut from slabs so far (ids 1..blocks)
	max     int32 // budget in blocks
	inUse   int32
	maxUsed int32

	nodes    []node // out-of-order segment records, index 0 unused
	freeNode int32
}

const (
	blockSize  = 512
	slabBlocks = 128 // 64 KiB slabs
)

// node is one buffered out-of-order byte range.
type node struct {
	start int64 // stream offset of the first byte
	n     int32 // length
	blk   int32 // first block
	off   int32 // offset of the first byte in blk
	next  int32 // next node, by offset
}

func newPool(budget int) pool {
	max := int32(min(budget/blockSize, 1<<30))
	return pool{max: max, link: make([]int32, 1, 1+min(max, 1<<16)), nodes: make([]node, 1, 64)}
}

// avail reports whether n more blocks can be handed out.
func (p *pool) avail(n int) bool { return int(p.max-p.inUse) >= n }

// get returns a block id, or 0 when the budget is spent.
func (p *pool) get() int32 {
	var id int32
	switch {
	case p.free != 0:
		id = p.free
		p.free = p.link[id]
	case p.blocks < p.max:
		if int(p.blocks)%slabBlocks == 0 {
			p.slabs = append(p.slabs, make([]byte, slabBlocks*blockSize))
		}
		p.blocks++
		id = p.blocks
		p.link = append(p.link, 0)
	default:
		return 0
	}
	p.link[id] = 0
	p.inUse++
	p.maxUsed = max(p.maxUsed, p.inUse)
	return id
}

func (p *pool) put(id int32) {
	p.link[id] = p.free
	p.free = id
	p.inUse--
}

// putChain frees a chain of blocks.
func (p *pool) putChain(id int32) {
	for id != 0 {
		next := p.link[id]
		p.put(id)
		id = next
	}
}

func (p *pool) buf(id int32) []byte {
	i := int(id - 1)
	s := p.slabs[i/slabBlocks]
	o := (i % slabBlocks) * blockSize
	return s[o : o+blockSize : o+blockSize]
}

func (p *pool) getNode() int32 {
	if p.freeNode != 0 {
		id := p.freeNode
		p.freeNode = p.nodes[id].next
		p.nodes[id] = node{}
		return id
	}
	p.nodes = append(p.nodes, node{})
	return int32(len(p.nodes) - 1)
}

func (p *pool) putNode(id int32) {
	p.putChain(p.nodes[id].blk)
	p.nodes[id] = node{next: p.freeNode}
	p.freeNode = id
}

// queue is a FIFO of bytes in a chain of blocks: a stream's history of
// delivered bytes.
type queue struct {
	head, tail int32 // blocks
	headOff    int32 // offset of the first byte in head
	tailLen    int32 // bytes used in tail
	n          int32
}

// push appends b and reports false, having appended nothing, when the
// pool cannot hold it.
func (q *queue) push(p *pool, b []byte) bool {
	room := 0
	if q.tail != 0 {
		room = blockSize - int(q.tailLen)
	}
	if len(b) > room && !p.avail((len(b)-room+blockSize-1)/blockSize) {
		return false
	}
	for len(b) > 0 {
		if q.tail == 0 || q.tailLen == blockSize {
			id := p.get()
			if q.tail == 0 {
				q.head, q.headOff = id, 0
			} else {
				p.link[q.tail] = id
			}
			q.tail, q.tailLen = id, 0
		}
		c := copy(p.buf(q.tail)[q.tailLen:], b)
		q.tailLen += int32(c)
		q.n += int32(c)
		b = b[c:]
	}
	return true
}

// drop removes the first k bytes.
func (q *queue) drop(p *pool, k int) {
	if k >= int(q.n) {
		q.reset(p)
		return
	}
	q.n -= int32(k)
	for k > 0 {
		inHead := blockSize - int(q.headOff)
		if q.head == q.tail {
			inHead = int(q.tailLen - q.headOff)
		}
		if k < inHead {
			q.headOff += int32(k)
			return
		}
		k -= inHead
		next := p.link[q.head]
		p.put(q.head)
		q.head, q.headOff = next, 0
	}
}

func (q *queue) reset(p *pool) {
	p.putChain(q.head)
	*q = queue{}
}

// equal reports whether the bytes at [at, at+len(b)) of the queue equal b;
// the caller keeps at+len(b) within q.n.
func (q *queue) equal(p *pool, at int, b []byte) bool {
	return p.chainEqual(q.head, int(q.headOff)+at, b)
}

// nodeEqual reports whether the bytes of node nd at [at, at+len(b)) equal b.
func (p *pool) nodeEqual(nd *node, at int, b []byte) bool {
	return p.chainEqual(nd.blk, int(nd.off)+at, b)
}

// chainEqual reports whether the bytes of the block chain starting at
// block id, offset off, equal b; the chain holds at least off+len(b) bytes.
func (p *pool) chainEqual(id int32, off int, b []byte) bool {
	for off >= blockSize {
		id, off = p.link[id], off-blockSize
	}
	for len(b) > 0 {
		c := min(blockSize-off, len(b))
		if string(p.buf(id)[off:off+c]) != string(b[:c]) {
			return false
		}
		b = b[c:]
		id, off = p.link[id], 0
	}
	return true
}

// nodeTrim drops the first k bytes of node nd.
func (p *pool) nodeTrim(nd *node, k int) {
	nd.start += int64(k)
	nd.n -= int32(k)
	off := int(nd.off) + k
	for off >= blockSize {
		next := p.link[nd.blk]
		p.put(nd.blk)
		nd.blk, off = next, off-blockSize
	}
	nd.off = int32(off)
}

// nodeFill copies b into a fresh chain for node nd; the caller checked
// avail.
func (p *pool) nodeFill(nd *node, b []byte) {
	var last int32
	for len(b) > 0 {
		id := p.get()
		if last == 0 {
			nd.blk = id
		} else {
			p.link[last] = id
		}
		last = id
		b = b[copy(p.buf(id), b):]
	}
}
