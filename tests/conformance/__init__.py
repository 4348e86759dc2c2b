"""gatewayd's RFC 6455 conformance suite, organised like the Autobahn
TestSuite's case groups (1.x framing, 2.x pings, 3.x reserved bits, 4.x
opcodes, 5.x fragmentation, 6.x UTF-8, 7.x close, 9.x limits and volume)
plus handshake variants, run against the real daemon over raw sockets.

A package, so that its conftest.py is conformance.conftest and leaves the
suite's top-level conftest module alone.
"""
