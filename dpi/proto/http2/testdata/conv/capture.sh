#!/bin/sh
# Re-creates the conversations in this directory (Debian 12: apt-get install
# nghttp2-server nghttp2-client curl). Real peers talk on the loopback of a
# private network namespace, through ../relay, which writes each direction
# of each connection to <name>.0.c2s / <name>.0.s2c. Run as root from
# dpi/proto/http2: sh testdata/conv/capture.sh
set -eu
cd "$(dirname "$0")/../.."
out=testdata/conv
ns=h2capture
work=$(mktemp -d)
ip netns add $ns
trap 'kill $(jobs -p) 2>/dev/null || true; ip netns del $ns; rm -rf "$work"' EXIT
ip netns exec $ns ip link set lo up
mkdir -p "$work/root/api"
echo '<html>hello h2</html>' > "$work/root/index.html"
echo '{"ok":true}' > "$work/root/api/items"
head -c 20000 /dev/zero | tr '\0' 'x' > "$work/root/big.txt"
printf '{"name":"widget","note":"1 UNION SELECT password FROM users"}' > "$work/post.json"
# A gRPC request message: field 1 "widget", field 2 a nested message
# whose field 1 is "1 UNION SELECT password", field 3 the varint 42.
printf '\000\000\000\000\045\012\006widget\022\031\012\0271 UNION SELECT password\030\052' > "$work/grpc.bin"
go build -o "$work/relay" ./testdata/relay
go build -o "$work/h2cserver" ./testdata/h2cserver
# grpcpeer is a module of its own (google.golang.org/grpc, from the Go
# module proxy).
(cd testdata/grpcpeer && go build -o "$work/grpcpeer" .)
ip netns exec $ns nghttpd --no-tls -d "$work/root" 8080 &
ip netns exec $ns "$work/h2cserver" -listen 127.0.0.1:8081 &
ip netns exec $ns "$work/grpcpeer" -serve 127.0.0.1:8082 &
# nghttpd answers POST with 404 after reading the body; that is enough.
sleep 0.5

cap() { # name, server port, then the client command line (the relay listens on :9000)
	name=$1; port=$2; shift 2
	ip netns exec $ns "$work/relay" -listen 127.0.0.1:9000 -upstream 127.0.0.1:$port -out "$out/$name" 2>/dev/null &
	rp=$!
	sleep 0.3
	ip netns exec $ns "$@" >/dev/null
	sleep 0.3
	kill $rp
}

# curl, prior knowledge: GET with query, cookies, a custom header.
cap curl-prior 8080 curl -s --http2-prior-knowledge -A 'curl-h2-test' -H 'Cookie: a=1' -H 'Cookie: b=2' \
	'http://127.0.0.1:9000/index.html?id=1%20UNION%20SELECT%20password&x=%2e%2e/'
# curl, Upgrade: h2c from HTTP/1.1 (the 101 and then HTTP/2; nghttpd
# does not upgrade, the Go server does).
cap curl-upgrade 8081 curl -s --http2 'http://127.0.0.1:9000/api/items?q=1'
# nghttp: three concurrent streams, a 20000-byte response in two DATA
# frames, padding on every frame, a POST with a JSON body and a trailer.
cap nghttp-multi 8080 nghttp -n -b 17 -H 'x-test: multi' http://127.0.0.1:9000/index.html http://127.0.0.1:9000/big.txt http://127.0.0.1:9000/api/items
cap nghttp-post 8080 nghttp -n -d "$work/post.json" --trailer 'x-checksum: 42' -H 'content-type: application/json' http://127.0.0.1:9000/api/items
# gRPC-shaped: a length-prefixed protobuf message to a service method; the
# Go server echoes it and ends with grpc-status / grpc-message trailers.
cap grpc 8081 nghttp -n -d "$work/grpc.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
	-H 'grpc-encoding: identity' http://127.0.0.1:9000/orders.v1.Orders/Create
# Real gRPC (grpc-go client and server): a unary call, the same call
# gzip-compressed, and a call failing with InvalidArgument and a message.
cap grpc-go 8082 "$work/grpcpeer" -call 127.0.0.1:9000
# h2load: 100 identical requests on one connection, 10 at a time (the
# benchmark input).
cap h2load 8080 h2load -n 100 -c 1 -m 10 http://127.0.0.1:9000/index.html
