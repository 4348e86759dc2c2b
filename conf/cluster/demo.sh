#!/bin/sh
# Start the cluster demo (make cluster-demo): Redis, three gatewayd nodes
# sharing their rooms through it, and HAProxy in front of them, all on
# 127.0.0.1, all in the foreground; the chat page is at
# http://127.0.0.1:8080/.  ^C, or SIGTERM to this script, stops
# everything it started: HAProxy first, then the nodes (their clients are
# closed with 1001), then Redis.  docs/CLUSTER.md tells what it shows.
#
#   usage: conf/cluster/demo.sh [GATEWAYD]      (default build/gatewayd)
#
# The ports are those of conf/cluster/*, unless these say others (the
# tests take free ones):
#   CLUSTER_PORT         HAProxy's, for the clients        8080
#   CLUSTER_REDIS_PORT   Redis's                           6390
#   CLUSTER_NODE_PORTS   the nodes' proxy listeners        "8081 8082 8083"
#   CLUSTER_ADMIN_PORTS  the nodes' admin listeners        "9081 9082 9083"
# The configurations go, with those ports, into a temporary directory
# with Redis's data, which goes when the demo stops.
#
# Stop a node (kill PID, the demo prints them) to see its clients come
# back through HAProxy and its rooms move to another node; the demo then
# prints how to start it again.  Do not upgrade a node in place (SIGUSR2,
# gatewayd upgrade): the new process has a pid this script does not
# know, and shared rooms do not go over to it (docs/CLUSTER.md).
set -eu
# GATEWAYD as given, from where the script was started: the script runs
# from the project root.
gatewayd=${1:-}
case $gatewayd in
/*|'') ;;
*/*) gatewayd=$PWD/$gatewayd ;;
esac
cd "$(dirname "$0")/../.."
gatewayd=${gatewayd:-build/gatewayd}
python=${PYTHON:-/usr/bin/python3}
front=${CLUSTER_PORT:-8080}
redis_port=${CLUSTER_REDIS_PORT:-6390}
node_ports=${CLUSTER_NODE_PORTS:-8081 8082 8083}
admin_ports=${CLUSTER_ADMIN_PORTS:-9081 9082 9083}

for tool in redis-server haproxy "$gatewayd"; do
	if ! command -v "$tool" >/dev/null; then
		echo "cluster-demo: $tool not found (make deps-cluster" \
		    "installs redis-server and haproxy)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-cluster.XXXXXX")
redis_pid= haproxy_pid= node_pids= labels= monitor=

# Stop what runs, in order, each given up to 15 s (the nodes take up to
# shutdown_timeout, 10 s) before SIGKILL.
stop() {
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	i=0
	for pid in "$@"; do
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	# Once stopping, the stop goes to its end.
	trap '' INT TERM
	trap - EXIT
	[ -z "$monitor" ] || kill "$monitor" 2>/dev/null || true
	echo "cluster-demo: stopping" >&2
	[ -z "$haproxy_pid" ] || stop $haproxy_pid
	[ -z "$node_pids" ] || stop $node_pids
	[ -z "$redis_pid" ] || stop $redis_pid
	# The labels end with their writers; one whose writer is not ours
	# any more (an upgraded node) would not.
	for pid in $labels; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for port in $node_ports $admin_ports; do
		if "$python" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" \
		    2>/dev/null; then
			echo "cluster-demo: something still listens on" \
			    "127.0.0.1:$port, not started by this script" >&2
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The configurations with the ports of this run.
set -- $node_ports
n1=$1 n2=$2 n3=$3
set -- $admin_ports
a1=$1 a2=$2 a3=$3
ports() {
	sed -e "s/\<8080\>/$front/g" -e "s/\<6390\>/$redis_port/g" \
	    -e "s/\<8081\>/$n1/g" -e "s/\<8082\>/$n2/g" -e "s/\<8083\>/$n3/g" \
	    -e "s/\<9081\>/$a1/g" -e "s/\<9082\>/$a2/g" -e "s/\<9083\>/$a3/g" \
	    "$1" >"$tmp/$(basename "$1")"
}
for f in conf/cluster/redis.conf conf/cluster/haproxy.cfg \
    conf/cluster/gw1.ini conf/cluster/gw2.ini conf/cluster/gw3.ini; do
	ports "$f"
done
for n in 1 2 3; do
	"$gatewayd" -t -c "$tmp/gw$n.ini" >/dev/null 2>&1 ||
	    "$gatewayd" -t -c "$tmp/gw$n.ini"
done
haproxy -q -c -f "$tmp/haproxy.cfg"

# Wait until something answers on 127.0.0.1:PORT (with HTTP 200 at PATH,
# if given), at most 10 s, while the process PID lives.
await() {
	"$python" - "$@" <<'EOF'
import os, socket, sys, time, urllib.request
port, pid, path = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                sys.exit(1)
    except OSError:
        sys.exit(1)
    try:
        if path:
            url = f"http://127.0.0.1:{port}{path[0]}"
            if urllib.request.urlopen(url, timeout=1).status == 200:
                sys.exit(0)
        else:
            socket.create_connection(("127.0.0.1", int(port)), 1).close()
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

# Each program's log lines start with its name.
label() {
	mkfifo "$tmp/$1.log"
	sed -u "s/^/$1: /" <"$tmp/$1.log" >&2 &
	labels="$labels $!"
}

mkdir "$tmp/redis"
label redis
redis-server "$tmp/redis.conf" --dir "$tmp/redis" >"$tmp/redis.log" 2>&1 &
redis_pid=$!
if ! await "$redis_port" $redis_pid; then
	echo "cluster-demo: redis-server did not start" >&2
	exit 1
fi

for n in 1 2 3; do
	label gw$n
	"$gatewayd" -c "$tmp/gw$n.ini" 2>"$tmp/gw$n.log" &
	node_pids="$node_pids $!"
	eval "gw${n}_pid=$!"
done
for n in 1 2 3; do
	eval "pid=\$gw${n}_pid port=\$a$n"
	if ! await "$port" "$pid" /healthz; then
		echo "cluster-demo: node gw$n did not start" >&2
		exit 1
	fi
done

label haproxy
haproxy -db -f "$tmp/haproxy.cfg" 2>"$tmp/haproxy.log" &
haproxy_pid=$!
if ! await "$front" $haproxy_pid; then
	echo "cluster-demo: haproxy did not start" >&2
	exit 1
fi

echo "cluster-demo: open 'http://127.0.0.1:$front/' in two windows to" \
    "chat: HAProxy gives each a node of three, and the rooms are the" \
    "same on all; ws://127.0.0.1:$front/chat?name=NAME for any WebSocket" \
    "client.  Nodes: gw1 pid $gw1_pid, gw2 pid $gw2_pid, gw3 pid" \
    "$gw3_pid.  ^C stops it all." >&2
echo "cluster-demo: ready" >&2

# Until a signal, or Redis or HAProxy stops on its own.  A node may stop:
# the others take its rooms.
while :; do
	for what in redis-server:$redis_pid haproxy:$haproxy_pid; do
		if ! kill -0 "${what#*:}" 2>/dev/null; then
			echo "cluster-demo: ${what%:*} stopped" >&2
			exit 1
		fi
	done
	for n in 1 2 3; do
		eval "pid=\$gw${n}_pid"
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			eval "gw${n}_pid="
			echo "cluster-demo: node gw$n stopped: HAProxy sends its" \
			    "clients to the others, which take its rooms" \
			    "within the lease and a fifth (6 s).  To start it" \
			    "again, in another terminal (^C does not stop it):" \
			    "cd $PWD && $gatewayd -c $tmp/gw$n.ini" >&2
		fi
	done
	sleep 1 &
	monitor=$!
	wait $monitor || true
	monitor=
done
