"""Serve a room's backend protocol on a Unix socket: the --listen mode of
the test backends, a thread per gateway connection."""

import os
import socket
import threading


def serve_unix(path, connection):
    """Listen at path and call connection(conn) in a thread for each
    connection, forever.  The socket is bound and listening before the
    path appears (a stale file is replaced at once), so whoever waits for
    the file can connect."""
    tmp = f"{path}.{os.getpid()}.tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(tmp)
    server.listen(16)
    os.rename(tmp, path)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=connection, args=(conn,), daemon=True).start()
