package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// packetMsg builds an NFQNL_MSG_PACKET datagram as the kernel does: the
// attributes in its order, the payload last.
func packetMsg(id, mark, indev, physin uint32, hw []byte, skbInfo uint32, payload []byte) []byte {
	var a []byte
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = append(hdr, 0x08, 0x00, 1) // hw protocol, hook
	a = appendNLAttr(a, nfqaPacketHdr, hdr)
	if mark != 0 {
		a = appendNLAttr(a, nfqaMark, binary.BigEndian.AppendUint32(nil, mark))
	}
	if indev != 0 {
		a = appendNLAttr(a, nfqaIfindexIndev, binary.BigEndian.AppendUint32(nil, indev))
	}
	if physin != 0 {
		a = appendNLAttr(a, nfqaIfindexPhysIn, binary.BigEndian.AppendUint32(nil, physin))
	}
	if hw != nil {
		h := binary.BigEndian.AppendUint16(nil, uint16(len(hw)))
		h = append(h, 0, 0)
		h = append(h, hw...)
		h = append(h, make([]byte, 8-len(hw))...)
		a = appendNLAttr(a, nfqaHwaddr, h)
	}
	if skbInfo != 0 {
		a = appendNLAttr(a, nfqaSkbInfo, binary.BigEndian.AppendUint32(nil, skbInfo))
	}
	if payload != nil {
		a = appendNLAttr(a, nfqaPayload, payload)
	}
	b := appendNLMsg(nil, nfnlSubsysQueue<<8|nfqnlMsgPacket, 0, 0, nfgenHeaderLen+len(a))
	b = append(b, 2, 0, 0, 7) // AF_INET, version, queue 7
	return append(b, a...)
}

func TestParseNFQPacket(t *testing.T) {
	payload := []byte{0x45, 0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	hw := []byte{2, 0, 0, 0, 0, 9}
	for _, tc := range []struct {
		name string
		msg  []byte
		want nfqPacket
		err  bool
	}{
		{name: "full", msg: packetMsg(77, 0xabc00001, 5, 9, hw, nfqaSkbGSO, payload),
			want: nfqPacket{ID: 77, HaveID: true, Mark: 0xabc00001, InDev: 5, HaveIn: true, PhysInDev: 9, HavePhysIn: true,
				HwAddr: [6]byte{2, 0, 0, 0, 0, 9}, HaveHwAddr: true, GSO: true, Payload: payload}},
		{name: "bare", msg: packetMsg(1, 0, 0, 0, nil, 0, payload),
			want: nfqPacket{ID: 1, HaveID: true, Payload: payload}},
		{name: "no payload", msg: packetMsg(3, 0, 4, 0, nil, 0, nil),
			want: nfqPacket{ID: 3, HaveID: true, InDev: 4, HaveIn: true}},
		{name: "short hwaddr ignored", msg: packetMsg(4, 0, 0, 0, []byte{1, 2, 3, 4}, 0, nil),
			want: nfqPacket{ID: 4, HaveID: true}},
		{name: "no packet header", msg: func() []byte {
			b := appendNLMsg(nil, nfnlSubsysQueue<<8|nfqnlMsgPacket, 0, 0, nfgenHeaderLen+8)
			b = append(b, 2, 0, 0, 7)
			return appendNLAttr(b, nfqaMark, []byte{0, 0, 0, 1})
		}(), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, next, ok := nextNLMsg(tc.msg, 0)
			if !ok || next != len(tc.msg) {
				t.Fatalf("nextNLMsg: ok %v next %d of %d", ok, next, len(tc.msg))
			}
			var p nfqPacket
			err := parseNFQPacket(m.Body, m.BodyOff, &p)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err != nil {
				if !errors.Is(err, ErrNFQMsg) {
					t.Errorf("error %v is not ErrNFQMsg", err)
				}
				return
			}
			if tc.want.Payload != nil {
				if !bytes.Equal(tc.msg[p.PayloadOff:p.PayloadOff+len(p.Payload)], tc.want.Payload) {
					t.Errorf("PayloadOff %d does not point at the payload", p.PayloadOff)
				}
				if p.PayloadOff < ethLen {
					t.Errorf("PayloadOff %d leaves no room for the Ethernet header", p.PayloadOff)
				}
			}
			if !bytes.Equal(p.Payload, tc.want.Payload) {
				t.Errorf("payload %x, want %x", p.Payload, tc.want.Payload)
			}
			p.Payload, p.PayloadOff, tc.want.Payload = nil, 0, nil
			if !reflect.DeepEqual(p, tc.want) {
				t.Errorf("got %+v\nwant %+v", p, tc.want)
			}
		})
	}
}

func TestNextNLMsg(t *testing.T) {
	one := packetMsg(1, 0, 0, 0, nil, 0, []byte{0x45, 1, 2}) // 3-byte payload: padded
	two := append(append([]byte{}, one...), one...)
	var n int
	for off := 0; ; n++ {
		_, next, ok := nextNLMsg(two, off)
		if !ok {
			break
		}
		off = next
	}
	if n != 2 {
		t.Errorf("%d messages in two", n)
	}
	for _, b := range [][]byte{nil, one[:10], one[:len(one)-1]} {
		if _, _, ok := nextNLMsg(b, 0); ok {
			t.Errorf("message found in %d bytes", len(b))
		}
	}
	errMsg := appendNLMsg(nil, nlmsgError, 0, 5, 4)
	errMsg = binary.NativeEndian.AppendUint32(errMsg, uint32(0xfffffff0)) // -16: EBUSY
	m, _, ok := nextNLMsg(errMsg, 0)
	if !ok || nlErrno(m.Body) != 16 || m.Seq != 5 {
		t.Errorf("error message: ok %v errno %d seq %d", ok, nlErrno(m.Body), m.Seq)
	}
}

// FuzzParseNFQPacket: any datagram decodes without panicking or reading
// outside it, and a payload found lies inside the buffer where
// PayloadOff says.
func FuzzParseNFQPacket(f *testing.F) {
	f.Add(packetMsg(77, 0xabc00001, 5, 9, []byte{2, 0, 0, 0, 0, 9}, nfqaSkbGSO, []byte{0x45, 0, 0, 20}))
	f.Add(packetMsg(1, 0, 0, 0, nil, 0, nil))
	f.Add(append(packetMsg(2, 1, 0, 0, nil, 0, []byte{0x60}), packetMsg(3, 0, 0, 0, nil, 0, []byte{1})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		for off := 0; ; {
			m, next, ok := nextNLMsg(b, off)
			if !ok {
				break
			}
			if next <= off || next > len(b) {
				t.Fatalf("next %d after %d of %d", next, off, len(b))
			}
			off = next
			var p nfqPacket
			if err := parseNFQPacket(m.Body, m.BodyOff, &p); err != nil && !errors.Is(err, ErrNFQMsg) {
				t.Fatalf("error %v is not ErrNFQMsg", err)
			}
			if p.Payload != nil {
				if p.PayloadOff < 0 || p.PayloadOff+len(p.Payload) > len(b) ||
					!bytes.Equal(b[p.PayloadOff:p.PayloadOff+len(p.Payload)], p.Payload) {
					t.Fatalf("payload at %d (%d bytes) not in the %d-byte buffer", p.PayloadOff, len(p.Payload), len(b))
				}
			}
		}
	})
}

// BenchmarkParseNFQPacket: decoding one queued packet's attributes.
func BenchmarkParseNFQPacket(b *testing.B) {
	msg := packetMsg(77, 0xabc00001, 5, 9, []byte{2, 0, 0, 0, 0, 9}, 0, make([]byte, 1500))
	b.ReportAllocs()
	var p nfqPacket
	for b.Loop() {
		m, _, _ := nextNLMsg(msg, 0)
		if err := parseNFQPacket(m.Body, m.BodyOff, &p); err != nil {
			b.Fatal(err)
		}
	}
}
