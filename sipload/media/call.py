"""One call's media, sans-IO: its outgoing stream, receive statistics, RTCP and figures.

Theory of operation:

1. The engine creates a :class:`CallMedia` when the call's SDP is settled (an
   answer, or an offer we answer), with the negotiated codec, payload types and
   the far end's address.  The outgoing :class:`OutStream` joins the worker's
   :class:`SendSchedule`; an echo call has none and returns what arrives.
2. Received RTP and RTCP come in through :meth:`CallMedia.on_rtp` and
   :meth:`CallMedia.on_rtcp` with the source address and the socket stamp.
   Datagrams from another address are counted (``foreign``) and dropped; ones
   that do not parse are counted (``malformed``) and dropped; neither raises.
3. :meth:`CallMedia.rtcp_due` gives a compound RTCP packet every
   :data:`rtcp.INTERVAL` seconds; :meth:`CallMedia.rtcp_bye` the last one.
4. :meth:`CallMedia.figures` gives the per-call numbers that join the call's record
   (:data:`FIELDS`), with the G.107 MOS of the received stream.
5. An SRTP call (``srtp`` set: an RTP/SAVP stream keyed with SDES) unprotects
   every datagram from the far end before anything else reads it, and protects
   every packet it sends (its outgoing stream protects through the same object):
   echoes, RTCP reports and the final BYE.  What libsrtp refuses (a tag that does
   not verify, a replayed index) is counted in the figures and dropped; it never
   reaches the statistics.
"""

from __future__ import annotations

import struct

from sipload.media import emodel, rtcp
from sipload.media.dtmf import parse_event
from sipload.media.errors import MediaParseError
from sipload.media.receive import ReceiveStats
from sipload.media.record import Recorder
from sipload.media.rtp import is_rtcp, parse_rtp
from sipload.media.schedule import Address, OutStream
from sipload.media.srtp import SrtpStream

#: The fixed RTP header after its first byte: M/PT, sequence number, timestamp, SSRC.
_FIXED = struct.Struct("!BHII")

#: The per-call media figures, in record column order (see :meth:`CallMedia.figures`).
FIELDS: tuple[str, ...] = (
    "sent", "received", "expected", "lost", "loss_rate", "duplicates", "out_of_order",
    "jitter_ms", "max_jitter_ms", "longest_gap_ms", "ssrc_changes", "pt_changes", "malformed",
    "foreign", "events", "r_factor", "mos", "remote_lost", "remote_fraction_lost",
    "remote_jitter_ms", "rtt_ms", "srtp", "srtp_auth_failures", "srtp_replay_failures",
)


class CallMedia:
    """The media of one call.

    Args:
        codec: "PCMU" or "PCMA".
        payload_type: the negotiated audio payload type.
        event_pt: the negotiated telephone-event payload type, or -1.
        ssrc: our SSRC (also used for an echo call's RTCP).
        remote: the far end's RTP address from its SDP (None: not known yet).
        out: our outgoing stream, or None for an echo-only call.
        echo: return every valid RTP packet that arrives, unchanged.
        ptime: packet interval, seconds (for the E-model's delay).
        wall_offset: wall clock minus monotonic clock, seconds (for NTP times).
        cname: our RTCP CNAME.
        record: keep the received audio.
        now: the monotonic time media starts.
    """

    def __init__(self, codec: str, payload_type: int, event_pt: int, ssrc: int,
                 remote: Address | None, out: OutStream | None, echo: bool, ptime: float,
                 wall_offset: float, cname: str, record: bool, now: float) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.event_pt = event_pt
        self.ssrc = ssrc
        self.remote = remote
        self.out = out
        self.echo = echo
        self.ptime = ptime
        self.wall_offset = wall_offset
        self.cname = cname
        self.stats = ReceiveStats(8000, event_pt)
        self.recorder: Recorder | None = Recorder(codec) if record else None
        self.echoed = 0
        self.remote_ssrc = -1
        self.rtcp_sent = 0
        self.rtcp_received = 0
        self.rtcp_malformed = 0
        self.next_rtcp = now + rtcp.INTERVAL
        self.remote_lost = -1
        self.remote_fraction_lost = -1.0
        self.remote_jitter = -1.0
        self.rtt = -1.0
        self._last_sr_ntp = 0
        self._last_sr_at = 0.0
        #: SRTP of an RTP/SAVP stream (None: plain RTP); see :meth:`secure`
        self.srtp: SrtpStream | None = None
        #: refusals of SRTP streams this call had before a re-key
        self._srtp_counts = (0, 0, 0)

    @property
    def remote_rtcp(self) -> Address | None:
        """Where RTCP goes: the RTP port + 1 (RFC 3550 §11)."""
        if self.remote is None:
            return None
        return (self.remote[0], self.remote[1] + 1)

    def move(self, remote: Address) -> None:
        """A new SDP moved the far end's media address."""
        self.remote = remote
        if self.out is not None:
            self.out.dest = remote

    def secure(self, srtp: SrtpStream | None) -> None:
        """Protect the stream with ``srtp`` from now on (None: plain RTP again); the
        failures counted by the stream it replaces stay in the figures."""
        old = self.srtp
        if old is not None:
            a, r, m = self._srtp_counts
            self._srtp_counts = (a + old.auth_failures, r + old.replay_failures,
                                 m + old.malformed)
        self.srtp = srtp
        if self.out is not None:
            self.out.protect = srtp.protect if srtp is not None else None

    def on_rtp(self, data: bytes, source: Address, stamp: float) -> bytes | None:
        """Account one datagram read from this call's RTP socket.

        Returns:
            The datagram to send back to ``source`` when this is an echo call and the
            packet was valid RTP from the far end (protected again for an SRTP
            call); else None.
        """
        stats = self.stats
        if source != self.remote:
            stats.count_foreign()
            return None
        srtp = self.srtp
        if srtp is not None:
            plain = srtp.unprotect(data)
            if plain is None:
                return None
            back = self._account(plain, stamp)
            return srtp.protect(back) if back is not None else None
        return self._account(data, stamp)

    def _account(self, data: bytes, stamp: float) -> bytes | None:
        """The statistics of one plain RTP datagram from the far end; the echo or None."""
        stats = self.stats
        size = len(data)
        if size >= 12 and data[0] == 0x80 and not 192 <= data[1] <= 223:
            # the common case: version 2, no padding, extension or CSRC; not RTCP
            second, seq, timestamp, ssrc = _FIXED.unpack_from(data, 1)
            pt = second & 0x7F
            if pt != self.event_pt:
                stats.on_packet(seq, timestamp, ssrc, pt, size - 12, stamp)
                if self.recorder is not None and pt == self.payload_type:
                    self.recorder.add(ssrc, timestamp, data[12:])
                if self.echo:
                    self.echoed += 1
                    return data
                return None
        if is_rtcp(data):
            self.on_rtcp(data, stamp)
            return None
        try:
            header = parse_rtp(data)
        except MediaParseError:
            stats.count_malformed()
            return None
        event_end = False
        event_code = -1
        pt = header.payload_type
        if pt == self.event_pt:
            try:
                event = parse_event(data[header.payload_start:header.payload_end])
            except MediaParseError:
                stats.count_malformed()
                return None
            event_end = event.end
            event_code = event.event
        stats.on_packet(header.seq, header.timestamp, header.ssrc, pt, header.payload_size, stamp,
                        event_end, event_code)
        if self.recorder is not None and pt == self.payload_type:
            self.recorder.add(header.ssrc, header.timestamp,
                              data[header.payload_start:header.payload_end])
        if self.echo:
            self.echoed += 1
            return data
        return None

    def on_rtcp(self, data: bytes, stamp: float) -> None:
        """Account one RTCP datagram from the far end (its source was checked by the caller)."""
        srtp = self.srtp
        if srtp is not None:
            plain = srtp.unprotect_rtcp(data)
            if plain is None:
                return
            data = plain
        try:
            report = rtcp.parse_rtcp(data)
        except MediaParseError:
            self.rtcp_malformed += 1
            return
        self.rtcp_received += 1
        if report.ntp:
            self._last_sr_ntp = report.ntp
            self._last_sr_at = stamp
        for block in report.blocks:
            if block.source != self.ssrc:
                continue
            self.remote_lost = block.cumulative_lost
            self.remote_fraction_lost = block.fraction_lost
            self.remote_jitter = block.jitter / 8000.0
            if block.lsr:
                arrival = rtcp.ntp_middle(rtcp.ntp_of(stamp + self.wall_offset))
                rtt_units = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
                if rtt_units < 0x80000000:
                    self.rtt = rtt_units / 65536.0

    def rtcp_due(self, now: float) -> bytes | None:
        """A compound RTCP packet when one is due at ``now``, else None."""
        if now < self.next_rtcp:
            return None
        self.next_rtcp = now + rtcp.INTERVAL
        return self._compound(now, bye=False)

    def rtcp_bye(self, now: float) -> bytes | None:
        """The last compound packet of the call: a report, SDES and BYE (None: SRTCP
        could not protect it)."""
        return self._compound(now, bye=True)

    def _compound(self, now: float, bye: bool) -> bytes | None:
        blocks: list[tuple[int, int, int, int, int, int, int]] = []
        stats = self.stats
        if stats.ssrc >= 0:
            fraction, cumulative, highest, jitter = stats.report_block()
            lsr = 0
            dlsr = 0
            if self._last_sr_ntp:
                lsr = rtcp.ntp_middle(self._last_sr_ntp)
                dlsr = int((now - self._last_sr_at) * 65536.0)
            blocks.append((stats.ssrc, fraction, cumulative, highest, jitter, lsr, dlsr))
        sender: tuple[int, int, int, int] | None = None
        out = self.out
        if out is not None and out.packets_sent:
            sender = (rtcp.ntp_of(now + self.wall_offset), out.timestamp, out.packets_sent,
                      out.octets_sent)
        packet = rtcp.build_report(self.ssrc, blocks, sender) + rtcp.build_sdes(self.ssrc,
                                                                                 self.cname)
        if bye:
            packet += rtcp.build_bye(self.ssrc)
        self.rtcp_sent += 1
        if self.srtp is not None:
            return self.srtp.protect_rtcp(packet)
        return packet

    def figures(self) -> dict[str, float]:
        """The call's media figures, keyed by :data:`FIELDS` (-1: not known)."""
        stats = self.stats
        sent = self.out.packets_sent if self.out is not None else self.echoed
        r = -1.0
        mos = -1.0
        if stats.expected:
            r, mos = emodel.call_mos(self.codec, stats.loss_rate, stats.burst_ratio(),
                                     self.ptime, stats.max_jitter_seconds,
                                     self.rtt if self.rtt >= 0 else None)
        return {
            "sent": float(sent), "received": float(stats.received),
            "expected": float(stats.expected), "lost": float(stats.lost),
            "loss_rate": stats.loss_rate, "duplicates": float(stats.duplicates),
            "out_of_order": float(stats.out_of_order),
            "jitter_ms": stats.jitter_seconds * 1000.0,
            "max_jitter_ms": stats.max_jitter_seconds * 1000.0,
            "longest_gap_ms": stats.longest_gap * 1000.0,
            "ssrc_changes": float(stats.ssrc_changes), "pt_changes": float(stats.pt_changes),
            "malformed": float(stats.malformed + self.rtcp_malformed
                               + self._srtp_counts[2]
                               + (self.srtp.malformed if self.srtp is not None else 0)),
            "foreign": float(stats.foreign), "events": float(stats.events),
            "r_factor": r, "mos": mos,
            "remote_lost": float(self.remote_lost),
            "remote_fraction_lost": self.remote_fraction_lost,
            "remote_jitter_ms": self.remote_jitter * 1000.0 if self.remote_jitter >= 0 else -1.0,
            "rtt_ms": self.rtt * 1000.0 if self.rtt >= 0 else -1.0,
            **self.srtp_figures(),
        }

    def srtp_figures(self) -> dict[str, float]:
        """``srtp`` (the suite's tag bits, 80 or 32; 0 for plain RTP) and the SRTP and
        SRTCP packets refused: failed authentication, replayed."""
        auth, replay, _ = self._srtp_counts
        srtp = self.srtp
        bits = 0
        if srtp is not None:
            auth += srtp.auth_failures
            replay += srtp.replay_failures
            bits = srtp.tag_bits
        return {"srtp": float(bits), "srtp_auth_failures": float(auth),
                "srtp_replay_failures": float(replay)}
