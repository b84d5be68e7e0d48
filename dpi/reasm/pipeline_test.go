package reasm_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/reasm"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPipeline drives decode → flow → reasm the way the engine will: one
// decoder, flow table and reassembler per worker, two Streams in each
// flow's state, released by the flow table's end callback.
func TestPipeline(t *testing.T) {
	type state struct{ dir [2]reasm.Stream }
	r, err := reasm.New(reasm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var ended []flow.Reason
	table, err := flow.New(flow.Config{}, func(f *flow.Flow[state], why flow.Reason) {
		r.Release(&f.State.dir[flow.ToServer])
		r.Release(&f.State.dir[flow.ToClient])
		ended = append(ended, why)
	})
	if err != nil {
		t.Fatal(err)
	}
	dec := decode.NewDecoder()
	var got [2][]byte
	deliver := [2]func([]byte){
		func(b []byte) { got[flow.ToServer] = append(got[flow.ToServer], b...) },
		func(b []byte) { got[flow.ToClient] = append(got[flow.ToClient], b...) },
	}

	c := netip.MustParseAddrPort("198.18.0.1:40000")
	s := netip.MustParseAddrPort("198.18.1.1:80")
	const cisn, sisn = 0xfffffff0, 7000 // the client's sequence numbers wrap
	req := "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
	cs := func(flags uint8, seq uint32, payload string) testnet.FrameSpec {
		return testnet.FrameSpec{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: flags | testnet.ACK, Seq: seq, Ack: sisn + 1, Payload: []byte(payload)}
	}
	steps := []struct {
		spec   testnet.FrameSpec
		dir    flow.Dir
		status reasm.Status
	}{
		{testnet.FrameSpec{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: cisn}, flow.ToServer, reasm.StatusEmpty},
		{testnet.FrameSpec{Src: s, Dst: c, Proto: testnet.ProtoTCP, Flags: testnet.SYN | testnet.ACK, Seq: sisn, Ack: cisn + 1}, flow.ToClient, reasm.StatusEmpty},
		{cs(0, cisn+1, ""), flow.ToServer, reasm.StatusEmpty},
		{cs(testnet.PSH, cisn+1+10, req[10:]), flow.ToServer, reasm.StatusBuffered},  // out of order: forwarded, held
		{cs(testnet.PSH, cisn+1, req[:10]), flow.ToServer, reasm.StatusDelivered},    // fills the gap: the whole request is inspected now
		{cs(testnet.PSH, cisn+1, "GET /admin"), flow.ToServer, reasm.StatusConflict}, // evasion: drop
		{testnet.FrameSpec{Src: s, Dst: c, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Seq: sisn + 1, Ack: cisn + 1 + uint32(len(req)), Payload: []byte("HTTP/1.1 200 OK\r\n\r\n")}, flow.ToClient, reasm.StatusDelivered},
		{cs(testnet.FIN, cisn+1+uint32(len(req)), ""), flow.ToServer, reasm.StatusEmpty},
		{testnet.FrameSpec{Src: s, Dst: c, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.FIN, Seq: sisn + 20, Ack: cisn + 2 + uint32(len(req))}, flow.ToClient, reasm.StatusEmpty},
		{cs(0, cisn+2+uint32(len(req)), ""), flow.ToServer, reasm.StatusEmpty}, // the last ACK, after the client's FIN
	}
	var f *flow.Flow[state]
	now := int64(0)
	for i, st := range steps {
		var p decode.Packet
		if err := dec.Decode(testnet.Frame(t, st.spec), &p); err != nil {
			t.Fatalf("step %d: decode: %v", i, err)
		}
		var d flow.Dir
		f, d, err = table.Lookup(&p, now)
		if err != nil {
			t.Fatalf("step %d: lookup: %v", i, err)
		}
		if d != st.dir {
			t.Fatalf("step %d: direction %v, want %v", i, d, st.dir)
		}
		if p.TCPFlags.Has(decode.TCPAck) {
			r.Ack(&f.State.dir[d^1], p.Ack)
		}
		res := r.Push(&f.State.dir[d], reasm.Segment{Seq: p.Seq, Flags: p.TCPFlags, Payload: p.Payload}, deliver[d])
		if res.Status != st.status {
			t.Fatalf("step %d: %v, want %v", i, res, st.status)
		}
		now += int64(time.Millisecond)
	}
	if string(got[flow.ToServer]) != req || string(got[flow.ToClient]) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Errorf("streams %q / %q", got[flow.ToServer], got[flow.ToClient])
	}
	if f.TCP != flow.TCPClosed || !f.State.dir[flow.ToServer].Done() || !f.State.dir[flow.ToClient].Done() {
		t.Errorf("flow %v, streams done %v %v", f.TCP, f.State.dir[0].Done(), f.State.dir[1].Done())
	}
	table.Expire(now + int64(flow.DefaultTimeouts.Linger))
	if len(ended) != 1 || ended[0] != flow.ReasonClosed || r.Stats().PoolBytes != 0 {
		t.Errorf("ended %v, pool bytes in use %d", ended, r.Stats().PoolBytes)
	}
}
