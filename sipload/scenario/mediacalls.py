"""The media of a scenario's calls: when RTP starts, changes and stops, and its checks.

Theory of operation (the interpreter calls these; :class:`MediaTable` does the RTP):

1. Each leg with a media spec (``media:`` of the scenario, or of the leg) gets a
   stream key and an SSRC when its first SDP is built; our SDP offers the spec's
   codecs and ptime, our worker's RTP port, and announces the SSRC (RFC 5576).
2. An offer/answer completes when (a) an answer arrives: SDP in a response to our
   INVITE/UPDATE/PRACK (183 early media included) or in an ACK/PRACK after our
   offer; or (b) we send an answer.  Then the stream starts, or, if it runs
   already, follows the new SDP: hold, resume, a moved address (re-INVITE/UPDATE).
3. A leg's RTP stops when its call is released (BYE, CANCEL, failure) and when the
   call ends; the figures of the scenario's first leg with media go into the
   record.
4. An SDP exchange that leaves no usable stream fails the call (``media_failed``)
   when the leg asked for media.
5. A leg with ``srtp: sdes`` offers RTP/SAVP with one ``a=crypto`` line per suite
   (keys drawn once per leg, so re-offers keep them) and answers an RTP/SAVP offer
   with the first offered line it can use and a key of its own (kept while the
   far end keeps offering that tag and suite).  An offer with no usable line is
   answered with the stream rejected (port 0), and the call fails with why.
"""

from __future__ import annotations

from sipload.media import g711, sdes
from sipload.media.negotiate import MediaPlanError, plan_stream, with_ssrc
from sipload.media.table import MediaSpec, MediaTable
from sipload.scenario.calls import CallInstance, Leg
from sipload.scenario.model import MediaCheck, Program
from sipload.sip import sdp


class MediaCalls:
    """RTP for the calls of one :class:`Runner` (inactive until a table is attached)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.table: MediaTable | None = None
        #: one table per UA local address when calls leave from several (table 0 first)
        self.tables: list[MediaTable] = []
        self._keys: dict[tuple[int, str], int] = {}
        self._next_key = 0
        self._figures: dict[int, dict[str, float]] = {}
        #: (sent, received, expected, lost) packets of every stream stopped so far
        self._stopped: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.recordings: list[tuple[str, int, g711.Samples]] = []
        #: offer/answer exchanges completed since the last flush: (call, leg, remote is
        #: the answer); the runner starts their RTP with ``now`` in :meth:`Runner.media_flush`
        self.pending: list[tuple[CallInstance, Leg, bool]] = []
        #: SRTP: the a=crypto lines a leg offers, the one it answered with, and why it
        #: could answer none (by call instance and leg name)
        self._offered: dict[tuple[int, str], list[sdes.Crypto]] = {}
        self._answered: dict[tuple[int, str], sdes.Crypto] = {}
        self._refused: dict[tuple[int, str], str] = {}

    def attach(self, table: MediaTable, more: list[MediaTable] | None = None) -> None:
        """RTP goes through ``table``; with several source addresses, a call on local
        address ``k`` uses ``more[k - 1]`` (its sockets are bound there)."""
        self.table = table
        self.tables = [table, *more] if more else []

    def _table(self, inst: CallInstance) -> MediaTable | None:
        return self.tables[inst.local] if self.tables else self.table

    def exchanged(self, inst: CallInstance, leg: Leg, remote_is_answer: bool) -> None:
        """An offer/answer on ``leg`` completed (rule 2): its RTP starts or follows at the
        runner's next :meth:`Runner.media_flush <sipload.scenario.interpreter.Runner.media_flush>`.
        Without a table (a run with no RTP) nothing is queued: no one flushes the queue
        then, and each entry would hold its call (instance, record, messages) for the
        rest of the run."""
        if self.table is not None:
            self.pending.append((inst, leg, remote_is_answer))

    def spec(self, leg: Leg) -> MediaSpec | None:
        if self.table is None:
            return None
        return self.program.media_for(leg.name)

    def key(self, inst: CallInstance, leg: Leg) -> int:
        k = self._keys.get((inst.iid, leg.name))
        if k is None:
            self._next_key += 1
            k = self._next_key
            self._keys[(inst.iid, leg.name)] = k
        return k

    # -- SDP -----------------------------------------------------------------------

    def announce(self, inst: CallInstance, leg: Leg, desc: sdp.SessionDescription,
                 answering: bool = False) -> sdp.SessionDescription:
        """Our SDP for a leg with media, announcing its SSRC (and its SRTP keys).

        Args:
            answering: ``desc`` answers the far end's offer (``leg.remote_sdp``).
        """
        table = self._table(inst)
        assert table is not None
        ssrc = table.reserve_ssrc(self.key(inst, leg))
        desc = with_ssrc(desc, ssrc, table.cname)
        spec = self.spec(leg)
        if spec is None or not spec.srtp:
            return desc
        where = (inst.iid, leg.name)
        if answering:
            self._refused.pop(where, None)
        for index, md in enumerate(desc.media):
            if md.media != "audio" or md.port == 0 or md.proto != sdes.SAVP:
                continue
            if not answering:
                lines = self._offered.get(where)
                if lines is None:
                    lines = sdes.offer_lines(spec.suites, table.random_bytes)
                    self._offered[where] = lines
                sdes.with_crypto(md, lines)
                continue
            try:
                chosen = sdes.choose(self._offered_lines(leg, index), spec.suites)
            except sdes.CryptoError as e:
                self._refused[where] = f"SRTP: {e}"
                md.port = 0  # the stream is rejected (RFC 3264 §6)
                md.attributes = []
                continue
            mine = self._answered.get(where)
            if mine is None or (mine.tag, mine.suite) != (chosen.tag, chosen.suite):
                mine = sdes.answer_line(chosen, table.random_bytes)
                self._answered[where] = mine
            sdes.with_crypto(md, [mine])
        return desc

    @staticmethod
    def _offered_lines(leg: Leg, index: int) -> list[str]:
        """The a=crypto values of the far end's offer on m-line ``index``."""
        try:
            offer = sdp.parse_sdp(leg.remote_sdp)
        except sdp.SdpError:
            return []
        return sdes.crypto_lines(offer.media[index]) if index < len(offer.media) else []

    def completed(self, inst: CallInstance, leg: Leg, remote_is_answer: bool,
                  now: float) -> str | None:
        """An offer/answer on ``leg`` completed; start or update its RTP.

        Returns:
            The failure detail when the leg needs media and the SDP gives none, else None.
        """
        spec = self.spec(leg)
        table = self._table(inst)
        if spec is None or table is None or leg.local_sdp is None or not leg.remote_sdp:
            return None
        refused = self._refused.get((inst.iid, leg.name))
        if refused is not None and not remote_is_answer:
            return f"media: {refused}"
        try:
            remote = sdp.parse_sdp(leg.remote_sdp)
            plan = plan_stream(leg.local_sdp, remote, remote_is_answer, spec.suites)
        except sdp.SdpError as e:
            return f"media: the far end's SDP does not parse ({e})"
        except MediaPlanError as e:
            return f"media: {e}"
        table.start(self.key(inst, leg), spec, plan, now)
        return None

    # -- the end -------------------------------------------------------------------

    def stop_leg(self, inst: CallInstance, leg: Leg, now: float) -> None:
        """The leg's call is gone: stop its RTP and keep its figures."""
        where = (inst.iid, leg.name)
        self._offered.pop(where, None)
        self._answered.pop(where, None)
        self._refused.pop(where, None)
        k = self._keys.pop(where, None)
        table = self._table(inst)
        if k is None or table is None:
            return
        media = table.get(k)
        if media is not None and media.recorder is not None:
            spec = self.spec(leg)
            if spec is not None and spec.record:
                self.recordings.append((spec.record, inst.record.call_number,
                                        media.recorder.samples()))
        figures = table.stop(k, now)
        table.forget(k)
        if figures is not None:
            s, r, e, lost = self._stopped
            self._stopped = (s + int(figures["sent"]), r + int(figures["received"]),
                             e + int(figures["expected"]), lost + int(figures["lost"]))
        if figures is not None and inst.iid not in self._figures:
            self._figures[inst.iid] = figures

    def finish(self, inst: CallInstance, now: float) -> None:
        """The call ends: stop every leg's RTP; its figures join the record."""
        for leg in inst.legs.values():
            self.stop_leg(inst, leg, now)
        figures = self._figures.pop(inst.iid, None)
        if figures is not None:
            inst.record.media = figures

    def packet_totals(self) -> tuple[tuple[int, int, int, int], int]:
        """(sent, received, expected, lost) packets of every stream so far, stopped
        or running, and the number running (read for the interval snapshots)."""
        sent, received, expected, lost = self._stopped
        running = 0
        for table in self.tables or ([self.table] if self.table is not None else []):
            for media in table.calls.values():
                running += 1
                stats = media.stats
                sent += media.out.packets_sent if media.out is not None else media.echoed
                received += stats.received
                expected += stats.expected
                lost += stats.lost
        return (sent, received, expected, lost), running

    # -- steps ---------------------------------------------------------------------

    def check(self, inst: CallInstance, leg: Leg, cond: MediaCheck) -> str | None:
        """Why the leg's media fails ``cond``, or None when it passes."""
        table = self._table(inst)
        k = self._keys.get((inst.iid, leg.name))
        media = table.get(k) if table is not None and k is not None else None
        if media is None:
            return "media: no RTP stream on this leg"
        fig = media.figures()
        why = _failed_check(fig, cond)
        if why is None:
            return None
        refused = [f"{fig[name]:.0f} {what}" for name, what in (
            ("srtp_auth_failures", "failed SRTP authentication"),
            ("srtp_replay_failures", "were SRTP replays")) if fig[name] > 0]
        if refused:
            why += " (packets refused: " + ", ".join(refused) + ")"
        return why

    def dtmf(self, inst: CallInstance, leg: Leg, digits: str, duration: float,
             gap: float) -> str | None:
        """Queue RFC 4733 events on the leg's stream; the failure detail, or None."""
        table = self._table(inst)
        k = self._keys.get((inst.iid, leg.name))
        media = table.get(k) if table is not None and k is not None else None
        if media is None or media.out is None:
            return "dtmf rfc4733: no RTP stream on this leg"
        try:
            media.out.queue_dtmf(digits, duration, gap)
        except ValueError as e:
            return f"dtmf rfc4733: {e}"
        return None


def _failed_check(fig: dict[str, float], cond: MediaCheck) -> str | None:
    """Why the figures fail ``cond``, or None."""
    if cond.min_packets >= 0 and fig["received"] < cond.min_packets:
        return f"media: {fig['received']:.0f} packets received < {cond.min_packets}"
    if cond.max_loss >= 0 and fig["loss_rate"] > cond.max_loss:
        return f"media: loss {fig['loss_rate']:.2%} > {cond.max_loss:.2%}"
    if cond.max_jitter >= 0 and fig["jitter_ms"] > cond.max_jitter * 1000:
        return f"media: jitter {fig['jitter_ms']:.1f} ms > {cond.max_jitter * 1000:g} ms"
    if cond.min_mos >= 0 and fig["mos"] < cond.min_mos:
        return f"media: MOS {fig['mos']:.2f} < {cond.min_mos:g}"
    return None
