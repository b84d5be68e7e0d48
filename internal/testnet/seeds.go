package testnet

import "testing"

// SeedFrames are well-formed frames of every kind the parsers take apart,
// for fuzz targets to start from and for tests that every parser must
// pass: TCP (handshake, data, FIN), UDP, ICMP and ICMPv6 over IPv4 and
// IPv6, an 802.1Q tag and a QinQ pair, IPv4 and IPv6 fragments, chains of
// IPv6 extension headers and an authentication header. None exceeds four
// extension headers, the most a parser of deepwall follows.
func SeedFrames(tb testing.TB) [][]byte {
	tb.Helper()
	pl := []byte("POST /login HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
	var out [][]byte
	for _, spec := range []FrameSpec{
		{Src: Client4, Dst: Server4, Proto: ProtoTCP, Flags: SYN, Seq: 1},
		{Src: Client4, Dst: Server4, Proto: ProtoTCP, Flags: PSH | ACK, Seq: 2, Ack: 9, Payload: pl},
		{Src: Client4, Dst: Server4, Proto: ProtoTCP, Flags: ACK | FIN, Seq: 5, Ack: 9, Payload: []byte("bye")},
		{Src: Server6, Dst: Client6, Proto: ProtoTCP, Flags: FIN | ACK, VLAN: 3},
		{Src: Client6, Dst: Server6, Proto: ProtoTCP, Flags: ACK, VLAN: 4, Payload: []byte("GET / HTTP/1.1\r\n")},
		{Src: Client4, Dst: Server4, Proto: ProtoUDP, Payload: pl},
		{Src: Client6, Dst: Server6, Proto: ProtoUDP, Payload: []byte("x")},
		{Src: Client6, Dst: Server6, Proto: ProtoUDP, VLAN: 9, Payload: pl},
		{Src: Client4, Dst: Server4, Proto: ProtoICMP},
		{Src: Client4, Dst: Server4, Proto: ProtoICMP, Payload: pl},
		{Src: Client6, Dst: Server6, Proto: ProtoICMPv6, Payload: []byte{0, 1, 0, 1}},
	} {
		out = append(out, Frame(tb, spec))
	}
	tcp6 := Frame(tb, FrameSpec{Src: Client6, Dst: Server6, Proto: ProtoTCP, Flags: ACK, Seq: 3})
	tcpSeg := RawTCP(PSH|ACK, 5, []byte{30, 4, 0x20, 0}, []byte("data"))
	return append(out,
		WithIPv6Ext(tcp6, ExtHopByHop, ExtDstOpts),
		RawEth(0x0800, RawIPv4(ProtoTCP, 0x2000, 77, tcpSeg)),
		RawEth(0x86dd, RawIPv6(0, RawExt(43, RawExt(44, RawFrag6(ProtoTCP, 0, false, 1, tcpSeg))))),
		RawEth(0x86dd, RawIPv6(51, RawAH(ProtoUDP, RawUDP(500, 4500, pl)))),
		RawEth(0x86dd, RawIPv6(44, RawFrag6(ProtoUDP, 8, true, 2, []byte("fragment data")))),
		RawEth(0x88a8, RawVLAN(1, 0x8100, RawVLAN(2, 0x0800, RawIPv4(ProtoUDP, 0, 1, RawUDP(53, 5353, pl))))),
	)
}
