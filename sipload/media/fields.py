"""The names of a call's media figures: one list for the media that measures them
(:meth:`sipload.media.call.CallMedia.figures`) and the run directory that stores them
(one ``media_<name>`` column each, :mod:`sipload.stats.recordrows`)."""

from __future__ import annotations

from typing import Final

FIELDS: Final[tuple[str, ...]] = (
    "sent", "received", "expected", "lost", "loss_rate", "duplicates", "out_of_order",
    "jitter_ms", "max_jitter_ms", "longest_gap_ms", "ssrc_changes", "pt_changes", "malformed",
    "foreign", "events", "r_factor", "mos", "remote_lost", "remote_fraction_lost",
    "remote_jitter_ms", "rtt_ms", "srtp", "srtp_auth_failures", "srtp_replay_failures",
)
"""A call's media figures, in the order of the run directory's columns."""
