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


def serve_tcp(port, connection):
    """The same on 127.0.0.1:port (a tcp: backend)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=connection, args=(conn,), daemon=True).start()
