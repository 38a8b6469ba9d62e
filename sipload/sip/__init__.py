"""The SIP core, sans-IO: messages, parsing, URIs, transactions, dialogs, digest and SDP.

It never opens a socket or reads a clock: bytes and ``now`` go in; messages, bytes to
send and the next deadline come out (the README's "The SIP core" table lists its modules).
"""
