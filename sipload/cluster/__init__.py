"""Coordinator and workers: typed control messages over ZeroMQ, local and remote workers."""
