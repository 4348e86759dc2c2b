#!/bin/sh
# Start the demo: the chat room server on a Unix socket, then gatewayd in
# the foreground.  ^C stops gatewayd, which closes its clients and rooms,
# then this script stops the chat server.
#   usage: conf/demo.sh GATEWAYD CONFIG
set -eu
gatewayd=$1
config=$2
python=${PYTHON:-/usr/bin/python3}

mkdir -p run
"$python" examples/chat/room.py --listen run/chat.sock &
room=$!
trap 'kill $room 2>/dev/null; wait $room 2>/dev/null || true' EXIT INT TERM

# Wait for the chat server's socket, at most 5 s.
i=0
while [ ! -S run/chat.sock ]; do
	i=$((i + 1))
	if [ $i -gt 50 ] || ! kill -0 $room 2>/dev/null; then
		echo "demo: the chat room server did not start" >&2
		exit 1
	fi
	sleep 0.1
done

echo "demo: open 'http://127.0.0.1:8080/' in two windows to chat" \
    "(rooms ws://127.0.0.1:8080/bongo and /fury);" \
    "echo rooms at ws://127.0.0.1:8080/echo/ANYTHING" >&2
"$gatewayd" -c "$config" || status=$?
exit ${status:-0}
