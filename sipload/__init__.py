"""sipload: a multiprocess SIP load generator and conformance tester."""

__version__ = "0.1.0"
