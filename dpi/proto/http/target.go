package http

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
)

// SplitPath sets r.Query, r.Path, r.ArgsBuf and r.Args from path, an
// origin-form target without its fragment ("/a/../b?x=%41"): the query is
// split off, the path normalised (NormalizePath) and the query decoded
// (DecodeArgs) into sc's buffers, which hold them until sc's next message.
// What the decoding finds is added to found. The HTTP/1 parser uses it for
// the request-target, dpi/proto/http2 for :path, so that both fill the
// same fields the same way.
func (sc *Scratch) SplitPath(r *Request, path []byte, found *proto.KindSet) {
	r.Query, r.Args, r.ArgsBuf = nil, nil, nil
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path, r.Query = path[:i], path[i+1:]
	}
	if pathIsNormal(path) {
		r.Path = path
	} else {
		if need := len(path) + 1; cap(sc.path) < need {
			sc.path = make([]byte, 0, max(need, 256))
		}
		r.Path = NormalizePath(sc.path[:0], path, found)
		sc.path = r.Path[:0]
	}
	if len(r.Query) > 0 {
		if cap(sc.args) < len(r.Query) {
			sc.args = make([]byte, 0, max(len(r.Query), 256))
		}
		r.ArgsBuf, r.Args = DecodeArgs(sc.args[:0], sc.argList[:0], r.Query, sc.lim.MaxArgs, found)
	}
}
