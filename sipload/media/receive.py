"""Receive statistics of one RTP stream (RFC 3550 Appendix A.1, A.3, A.8).

Theory of operation:

1. Every valid packet from the call's remote address is fed once, in arrival
   order, with the stamp taken at the socket (:meth:`ReceiveStats.on_packet`).
2. Sequence numbers are extended to 32 bits as in A.1: a forward step below
   ``MAX_DROPOUT`` advances the highest number (counting a wrap as a new cycle);
   a packet up to ``MAX_MISORDER`` behind it is late (out of order) or a
   duplicate; anything else is a jump that is believed only when the next packet
   follows it (then the source restarted: its counts so far are banked and the
   sequence starts again).  Unlike A.1 there is no probation: a load test counts
   from the first packet.
3. Duplicates are found with a ring of the last :data:`WINDOW` extended numbers,
   so they neither count as received nor hide a loss: ``lost = expected −
   (received − duplicates)`` (A.3, without the negative counts duplicates cause).
4. Interarrival jitter is A.8's estimator ``J += (|D| − J)/16`` over the
   difference of transit times, kept in timestamp units as a float; its maximum
   over the call is kept too.  RFC 4733 event packets (their timestamp is the
   event's start, not the sampling instant) and duplicates do not feed it.
5. A new SSRC starts a new segment (counts banked, sequence and transit reset)
   and is counted as a change.  Our own SSRC coming back (an echo, as from
   SIPp's -rtp_echo) is an ordinary remote stream: nothing here compares SSRCs
   with ours.
6. A change of audio payload type is counted; telephone-event packets are
   counted as events and do not count as a payload-type change.
"""

from __future__ import annotations

from sipload.media.dtmf import EVENT_NAMES

SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
#: Extended sequence numbers remembered for duplicate detection (> MAX_MISORDER).
WINDOW = 128
_MASK = WINDOW - 1
#: How many received DTMF keys a stream keeps.
MAX_DIGITS = 64


class ReceiveStats:
    """Statistics of the packets received on one call's RTP stream.

    Attributes (read them; only :meth:`on_packet` and the counters named in
    :meth:`count_malformed`/:meth:`count_foreign` change them):
        received: valid packets accepted, duplicates included.
        duplicates: packets whose extended sequence number was already seen.
        out_of_order: packets older than the highest sequence number seen.
        bad_jumps: packets dropped as an unconfirmed sequence jump (A.1).
        ssrc_changes / pt_changes: how often the source or the audio payload type changed.
        events: telephone-event packets; ``digits`` the keys they carried.
        jitter: A.8 jitter now, in timestamp units; ``max_jitter`` its maximum.
        longest_gap: the longest time between two packets, seconds.
        payload_bytes: payload octets received.
        malformed / foreign: datagrams rejected by the parser, or from another address.
    """

    def __init__(self, clock_rate: int = 8000, event_pt: int = -1) -> None:
        self.clock_rate = clock_rate
        self.event_pt = event_pt
        self.received = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.bad_jumps = 0
        self.ssrc_changes = 0
        self.pt_changes = 0
        self.events = 0
        self.digits = ""
        self.jitter = 0.0
        self.max_jitter = 0.0
        self.longest_gap = 0.0
        self.payload_bytes = 0
        self.malformed = 0
        self.foreign = 0
        self.first_arrival = -1.0
        self.last_arrival = -1.0
        self.loss_runs = 0
        self.ssrc = -1
        self.payload_type = -1
        # The current segment (one SSRC, one sequence), A.1's source state.
        self._base = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = SEQ_MOD + 1
        self._seg_received = 0
        self._seg_duplicates = 0
        self._banked_expected = 0
        self._banked_unique = 0
        self._transit = 0.0
        self._have_transit = False
        self._seen: list[int] = [-1] * WINDOW  # a list: faster to index than an array
        self._last_event_ts = -1
        # A.3 interval state for RTCP report blocks.
        self._expected_prior = 0
        self._received_prior = 0

    # -- feeding ------------------------------------------------------------------

    def on_packet(self, seq: int, timestamp: int, ssrc: int, payload_type: int,
                  payload_size: int, arrival: float, event_end: bool = False,
                  event_code: int = -1) -> None:
        """Account one valid RTP packet.

        Args:
            seq, timestamp, ssrc, payload_type: its header fields.
            payload_size: its payload length in bytes.
            arrival: the stamp taken at the socket when it was read (seconds).
            event_end, event_code: for a telephone-event packet, its E bit and event.
        """
        late = False
        if ssrc != self.ssrc:
            if self.ssrc >= 0:
                self.ssrc_changes += 1
                self._bank()
            self.ssrc = ssrc
            self._start(seq)
            ext = seq
        else:
            max_seq = self._max_seq
            udelta = (seq - max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if udelta == 0:
                    ext = self._cycles + seq
                else:
                    if seq < max_seq:
                        self._cycles += SEQ_MOD
                    self._max_seq = seq
                    ext = self._cycles + seq
                    if udelta > 1:
                        self.loss_runs += 1
            elif udelta <= SEQ_MOD - MAX_MISORDER:
                if seq == self._bad_seq:
                    self._bank()
                    self._start(seq)
                    ext = seq
                else:
                    self._bad_seq = (seq + 1) & 0xFFFF
                    self.bad_jumps += 1
                    return
            else:
                ext = self._cycles + seq if seq <= max_seq else self._cycles - SEQ_MOD + seq
                if ext < self._base:
                    self._base = ext
                late = True
        self.received += 1
        self._seg_received += 1
        slot = ext & _MASK
        seen = self._seen
        if seen[slot] == ext:
            self.duplicates += 1
            self._seg_duplicates += 1
            self._gap(arrival)
            return
        seen[slot] = ext
        if late:
            self.out_of_order += 1
        self.payload_bytes += payload_size
        last = self.last_arrival  # _gap, inlined: this runs for every packet
        if last >= 0:
            if arrival - last > self.longest_gap:
                self.longest_gap = arrival - last
        else:
            self.first_arrival = arrival
        self.last_arrival = arrival
        if payload_type == self.event_pt:
            self.events += 1
            if event_end and timestamp != self._last_event_ts:
                self._last_event_ts = timestamp
                name = EVENT_NAMES.get(event_code)
                if name is not None and len(self.digits) < MAX_DIGITS:
                    self.digits += name
            return
        if payload_type != self.payload_type:
            if self.payload_type >= 0:
                self.pt_changes += 1
            self.payload_type = payload_type
        transit = arrival * self.clock_rate - timestamp
        if self._have_transit:
            d = transit - self._transit
            if d < 0:
                d = -d
            # Transit differences across a timestamp wrap are off by 2**32: fold them.
            if d > 2147483648.0:
                d = 4294967296.0 - d
            jitter = self.jitter + (d - self.jitter) / 16.0
            self.jitter = jitter
            if jitter > self.max_jitter:
                self.max_jitter = jitter
        self._transit = transit
        self._have_transit = True

    def count_malformed(self) -> None:
        """A datagram on this stream's socket failed to parse."""
        self.malformed += 1

    def count_foreign(self) -> None:
        """A datagram arrived from an address that is not the call's remote media address."""
        self.foreign += 1

    def _gap(self, arrival: float) -> None:
        if self.last_arrival >= 0:
            gap = arrival - self.last_arrival
            if gap > self.longest_gap:
                self.longest_gap = gap
        else:
            self.first_arrival = arrival
        self.last_arrival = arrival

    def _start(self, seq: int) -> None:
        self._base = seq
        self._max_seq = seq
        self._cycles = 0
        self._bad_seq = SEQ_MOD + 1
        self._seg_received = 0
        self._seg_duplicates = 0
        self._have_transit = False
        for i in range(WINDOW):
            self._seen[i] = -1

    def _bank(self) -> None:
        self._banked_expected += self._seg_expected()
        self._banked_unique += self._seg_received - self._seg_duplicates

    def _seg_expected(self) -> int:
        if self._seg_received == 0:
            return 0
        return self._cycles + self._max_seq - self._base + 1

    # -- figures ------------------------------------------------------------------

    @property
    def expected(self) -> int:
        """Packets the sender sent over the call as told by the sequence numbers (A.3)."""
        return self._banked_expected + self._seg_expected()

    @property
    def unique(self) -> int:
        """Distinct packets received."""
        return self._banked_unique + self._seg_received - self._seg_duplicates

    @property
    def lost(self) -> int:
        """Expected minus distinct packets received, never below zero."""
        return max(self.expected - self.unique, 0)

    @property
    def loss_rate(self) -> float:
        """Lost as a fraction of expected (0 when nothing was expected)."""
        expected = self.expected
        return self.lost / expected if expected else 0.0

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self.clock_rate

    @property
    def max_jitter_seconds(self) -> float:
        return self.max_jitter / self.clock_rate

    @property
    def extended_max(self) -> int:
        """The current segment's extended highest sequence number (for RTCP)."""
        return self._cycles + self._max_seq

    def burst_ratio(self) -> float:
        """G.107's BurstR from the loss pattern (a two-state Markov estimate).

        With ``p`` the chance that a packet after a received one is lost and ``q``
        the chance that one after a lost one arrives, BurstR = 1/(p + q): 1 for
        random loss, above 1 when losses come in runs.  Loss runs are counted as
        forward gaps in the sequence.
        """
        lost = self.lost
        unique = self.unique
        if lost == 0 or unique == 0 or self.loss_runs == 0:
            return 1.0
        p = self.loss_runs / unique
        q = min(self.loss_runs / lost, 1.0)
        return max(1.0 / (p + q), 1.0) if p + q > 0 else 1.0

    def report_block(self) -> tuple[int, int, int, int]:
        """The figures of an RTCP report block about this stream (RFC 3550 §6.4.1, A.3).

        Returns:
            (fraction lost since the last call as 8-bit fixed point, cumulative lost
            clamped to 24 bits signed, extended highest sequence number, jitter in
            timestamp units).
        """
        expected = self.expected
        unique = self.unique
        expected_interval = expected - self._expected_prior
        received_interval = unique - self._received_prior
        self._expected_prior = expected
        self._received_prior = unique
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min((lost_interval << 8) // expected_interval, 255)
        cumulative = max(min(expected - unique, 0x7FFFFF), -0x800000)
        return fraction, cumulative, self.extended_max & 0xFFFFFFFF, int(self.jitter)
