"""RTP media, sans-IO: packets, G.711 and RFC 4733 payloads, per-stream statistics,
RTCP reports, the ITU-T G.107 E-model and a send schedule for many streams.

Nothing here opens a socket, reads a clock or imports asyncio: the worker's shell
hands in received datagrams with the stamp taken at the socket and asks for the
packets due at ``now``.
"""
