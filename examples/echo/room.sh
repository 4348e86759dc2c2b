#!/bin/sh
# gatewayd's echo room in one jq program (the records: docs/PROTOCOL.md).
#
#   [resource /echo]
#   backend = exec:examples/echo/room.sh
#
# Every message record goes back to its sender as a send record: text as
# text, binary as binary (the base64 passes through untouched).  Every other
# record (hello, open, close, types added later) yields nothing.
#
# -c writes each record on one line and --unbuffered flushes every line at
# once, as gatewayd needs.  jq stops at input that is not JSON (gatewayd then
# holds the room's clients and starts the program again, as after any
# failure); gatewayd only ever writes valid JSON.  jq -R with fromjson? would survive bad lines,
# but jq 1.6 -R corrupts characters that straddle its 4 KiB read buffer.
exec jq -c --unbuffered '
  objects | select(.type == "message")
  | {type: "send", client}
    + if has("binary") then {binary} else {text} end
'
