package defrag_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/defrag"
	"github.com/deepwall/deepwall/internal/testnet"
)

// FuzzAdd feeds fragment sequences chosen by the fuzzer (three bytes per
// fragment: offset and end in 8-byte units plus odd bytes, flags) cut
// from one IPv4 or IPv6 datagram, with small bounds. It checks that Add
// never panics, memory stays within MaxBytes, and every datagram that
// comes out holds exactly the bytes of the datagram at the offsets the
// fragments it was built from claim (fragments marked conflicting carry
// other bytes; they must not be in a datagram that comes out whole).
func FuzzAdd(f *testing.F) {
	f.Add(false, []byte{0, 20, 1, 20, 40, 0})
	f.Add(true, []byte{20, 40, 0, 0, 20, 1})
	f.Add(false, []byte{0, 2, 1, 2, 4, 1, 1, 3, 5, 4, 6, 0})
	f.Add(true, []byte{0, 2, 0x81, 2, 4, 1, 4, 6, 0})
	const n = 400 // UDP payload: IP payload 408 bytes, 51 units
	wholes := [2][]byte{datagram(f, false, n), datagram(f, true, n)}
	f.Fuzz(func(t *testing.T, v6 bool, ops []byte) {
		whole := wholes[0]
		if v6 {
			whole = wholes[1]
		}
		const maxBytes = 16 << 10
		tab := defrag.New(defrag.Config{MaxBytes: maxBytes, MaxDatagrams: 4, MaxPerPair: 2})
		dec := decode.NewDecoder()
		var p decode.Packet
		for i := 0; i+2 < len(ops) && i < 3*200; i += 3 {
			off := int(ops[i]%52) * 8
			end := int(ops[i+1]%52)*8 + int(ops[i+2]>>4&7)
			if end > n+8 {
				end = n + 8
			}
			if end < off {
				off, end = end, off
			}
			more := ops[i+2]&1 != 0
			id := uint32(ops[i+2] >> 1 & 1)
			fr := testnet.Frag(whole, id, off, end, more)
			if ops[i+2]&0x80 != 0 && end > off {
				fr[len(fr)-1] ^= 0xff // a conflicting copy
			}
			if dec.Decode(fr, &p) != nil || p.Flags&decode.FlagFragment == 0 {
				continue
			}
			d, o := tab.Add(int64(i), 0, fr, &p)
			if s := tab.Stats(); s.Bytes > maxBytes {
				t.Fatalf("%d bytes held", s.Bytes)
			}
			if o != defrag.OutcomeComplete {
				continue
			}
			// The IP header's lengths cover the payload exactly. (The
			// datagram need not decode: a UDP length past a short
			// datagram is the receiver's to refuse.)
			ip := d.Frame[14:]
			var hl, total int
			if v6 {
				hl, total = 40, 40+int(binary.BigEndian.Uint16(ip[4:]))
			} else {
				hl, total = int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:]))
				if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
					t.Fatalf("datagram still a fragment")
				}
			}
			if total != len(ip) {
				t.Fatalf("IP length %d, datagram %d", total, len(ip))
			}
			var wp decode.Packet
			if err := dec.Decode(whole, &wp); err != nil {
				t.Fatal(err)
			}
			orig := whole[wp.L4Off:]
			body := ip[hl:]
			if len(body) > len(orig) {
				t.Fatalf("datagram of %d bytes from a %d-byte original", len(body), len(orig))
			}
			conflict := false
			for _, h := range append(d.Held, fr) {
				var hp decode.Packet
				if err := dec.Decode(h, &hp); err != nil {
					t.Fatalf("held frame: %v", err)
				}
				o := int(hp.Frag.Offset)
				if !bytes.Equal(hp.Payload, orig[o:o+len(hp.Payload)]) {
					conflict = true
				}
			}
			if !conflict && !bytes.Equal(body, orig[:len(body)]) {
				t.Fatalf("datagram bytes differ from the original")
			}
		}
	})
}
