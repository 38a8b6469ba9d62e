"""Every call's media on one worker, sans-IO: start, update, stop, demultiplex, send.

Theory of operation:

1. A worker has one RTP port (and RTCP on the next one) shared by all its calls;
   the SDP of every call carries it, and announces the call's SSRC (a=ssrc,
   RFC 5576).  Received datagrams are matched to a call by, in order: an SSRC of
   ours (an echo: SIPp's -rtp_echo returns every call's packets from one port, so
   only the SSRC tells them apart); an SSRC the far end announced in its SDP; the
   source address, when it is the SDP address of exactly one call.  The first
   valid packet a call gets by its address binds the packet's SSRC to that call
   (latching), so that it stays attributed when another call shares the address
   later.  A far end that sends every call's stream from one port without a=ssrc
   (SIPp's rtp_stream does) is told apart by that binding: a new SSRC from an
   address several calls share goes to the oldest of them that has none bound
   yet (the far end starts its streams in the order the calls were set up).  A
   datagram from an address shared by echo calls that fits no call is echoed
   without attribution (counted); anything else is counted as foreign at the
   worker level and dropped.
2. :meth:`MediaTable.start` is called when a call's offer/answer completes (an
   answer received, 183 early media included, or one we sent), :meth:`update`
   when a re-INVITE or UPDATE completes (hold, resume, a moved address),
   :meth:`stop` at BYE/CANCEL/failure: it returns the call's figures and the
   RTCP BYE to send.
3. Outgoing audio is on one :class:`SendSchedule` with a 1 ms pacing tick
   (:data:`GRID`), streams spread over it; :meth:`due` gives each tick's packets
   for the shell to send in a batch.  RTCP reports are polled at most every
   :data:`RTCP_POLL` seconds.
5. Received RTP comes in batches (:meth:`on_rtp_batch`), as the shell read them,
   each datagram with its socket stamp; the per-packet statistics stay here.
4. The payloads a spec plays are computed once per (codec, packet size) and shared.
6. A stream whose plan carries SRTP keys gets its :class:`SrtpStream` when it
   starts (a new one when a re-INVITE re-keys it).  Demultiplexing needs nothing
   else: SRTP leaves the RTP header, SSRC included, in the clear.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from sipload.media import g711, source
from sipload.media.call import CallMedia
from sipload.media.errors import MediaParseError
from sipload.media.negotiate import StreamPlan
from sipload.media.rtp import is_rtcp, parse_rtp
from sipload.media.schedule import Address, OutStream, SendSchedule, Tick
from sipload.media.sdes import DEFAULT_SUITES
from sipload.media.srtp import SrtpStream

_SSRC = struct.Struct("!I")
RTCP_POLL = 0.5
#: How many SSRCs of stopped calls are remembered (see MediaTable.after_stop).
RETIRED = 4096
#: The pacing tick of a worker's streams, seconds: 20 ms streams are spread over 20
#: ticks (see :class:`SendSchedule`).
GRID = 0.001
CLOCK_RATE = 8000


class MediaSpec:
    """What a scenario (or one leg) asks of its media.

    Attributes:
        codecs: what we offer, in order (e.g. ("PCMU", "PCMA")); telephone-event is
            added when ``dtmf`` is set.
        ptime_ms: packet interval, a multiple of 10 ms.
        play: "tone", "silence", "file" (``samples`` holds the file's audio) or "none".
        echo: return what arrives instead of playing (UAS).
        record: directory for received audio ("" = none).
        dtmf: offer telephone-event (RFC 4733).
        samples: decoded audio of a WAV file (8 kHz, 16-bit), for play "file".
        label: the WAV file's name, for messages.
        srtp: "sdes" for SRTP keyed with RFC 4568 a=crypto lines (RTP/SAVP), "" for RTP.
        suites: the SRTP suites offered and accepted, in order of preference.
    """

    def __init__(self, codecs: tuple[str, ...] = ("PCMU", "PCMA"), ptime_ms: int = 20,
                 play: str = "tone", echo: bool = False, record: str = "", dtmf: bool = True,
                 samples: g711.Samples | None = None, label: str = "",
                 frequency: int = source.TONE_HZ, srtp: str = "",
                 suites: tuple[str, ...] = DEFAULT_SUITES) -> None:
        self.codecs = codecs
        self.ptime_ms = ptime_ms
        self.play = play
        self.echo = echo
        self.record = record
        self.dtmf = dtmf
        self.samples = samples
        self.label = label
        self.frequency = frequency
        self.srtp = srtp
        self.suites = suites
        self._frames: dict[tuple[str, int], tuple[bytes, ...]] = {}

    @property
    def proto(self) -> str:
        """The m-line's transport: RTP/SAVP with SRTP, else RTP/AVP."""
        return "RTP/SAVP" if self.srtp else "RTP/AVP"

    @property
    def offer_codecs(self) -> tuple[str, ...]:
        return (*self.codecs, "telephone-event") if self.dtmf else self.codecs

    def frames(self, codec: str, samples_per_packet: int) -> tuple[bytes, ...]:
        key = (codec, samples_per_packet)
        got = self._frames.get(key)
        if got is None:
            if self.play == "file" and self.samples is not None:
                got = source.wav_frames(self.samples, codec, samples_per_packet)
            elif self.play == "tone":
                got = source.tone_frames(codec, samples_per_packet, self.frequency)
            else:
                got = source.silence_frames(codec, samples_per_packet)
            self._frames[key] = got
        return got


class MediaTable:
    """The media of every call on one worker.

    Args:
        now: the monotonic time the table starts (tick 0 of the grid).
        wall_offset: wall clock minus monotonic clock, for RTCP's NTP times.
        random_bits: a source of random 32-bit numbers (SSRCs, first sequence
            numbers and timestamps, RFC 3550 §5.1), from the shell.
        cname: the RTCP CNAME of this worker.
        grid: the pacing tick, seconds.
        random_bytes: a source of secret random bytes (SRTP master keys), from the
            shell; by default ``random_bits`` (fine for tests, not for secrets).
    """

    def __init__(self, now: float, wall_offset: float, random_bits: Callable[[], int],
                 cname: str, grid: float = GRID,
                 random_bytes: Callable[[int], bytes] | None = None) -> None:
        self.schedule = SendSchedule(now, grid)
        self.wall_offset = wall_offset
        self.random_bits = random_bits
        self.random_bytes: Callable[[int], bytes] = random_bytes if random_bytes is not None \
            else self._bytes_from_bits
        self.cname = cname
        self.calls: dict[int, CallMedia] = {}
        self._by_ssrc: dict[int, int] = {}
        #: our SSRC -> its call's media: one lookup routes an echoed packet
        self._own: dict[int, CallMedia] = {}
        self._by_remote_ssrc: dict[int, int] = {}
        self._reserved: dict[int, int] = {}
        self._echo_shared: dict[Address, int] = {}
        self.echoed_unattributed = 0
        #: return every RTP packet that belongs to no call (the default UAS, like SIPp's
        #: -rtp_echo: it needs no per-call state)
        self.echo_all = False
        self._by_addr: dict[Address, int] = {}
        self._by_rtcp: dict[Address, int] = {}
        self._shared: set[Address] = set()
        #: calls (in start order) at each far-end address with no far-end SSRC bound yet
        self._unlatched: dict[Address, dict[int, None]] = {}
        self.foreign = 0
        #: our SSRCs of calls that stopped (the last RETIRED of them): their echoes still
        #: in flight are not a new far-end stream for another call to latch
        self._retired: dict[int, None] = {}
        self.after_stop = 0
        self._next_rtcp_poll = now + RTCP_POLL
        self.streams_started = 0
        self._rtcp_outbox: list[tuple[bytes, Address]] = []

    def _bytes_from_bits(self, n: int) -> bytes:
        return b"".join((self.random_bits() & 0xFFFFFFFF).to_bytes(4, "big")
                        for _ in range((n + 3) // 4))[:n]

    # -- calls ------------------------------------------------------------------

    def start(self, key: int, spec: MediaSpec, plan: StreamPlan, now: float) -> CallMedia:
        """Start (or, if ``key`` has media already, update) a call's media."""
        existing = self.calls.get(key)
        if existing is not None:
            self.update(key, plan, now)
            return existing
        ssrc = self.reserve_ssrc(key)
        del self._reserved[key]
        ptime = spec.ptime_ms / 1000.0
        ticks = max(round(ptime / self.schedule.grid), 1)
        spp = CLOCK_RATE * spec.ptime_ms // 1000
        out: OutStream | None = None
        if not spec.echo:
            frames = spec.frames(plan.codec, spp)
            out = OutStream(ssrc, plan.payload_type, frames, spp, ticks,
                            self.random_bits() & 0xFFFF, self.random_bits(), plan.remote,
                            plan.event_pt, CLOCK_RATE)
            if not plan.send:
                out.pause()
        media = CallMedia(plan.codec, plan.payload_type, plan.event_pt, ssrc, plan.remote, out,
                          spec.echo, ptime, self.wall_offset, self.cname, bool(spec.record), now)
        if plan.srtp is not None:
            media.secure(SrtpStream(plan.srtp, echo=spec.echo))
        self.calls[key] = media
        self._by_ssrc[ssrc] = key
        self._own[ssrc] = media
        self._remote_ssrc(key, -1, plan.remote_ssrc)
        self._index(key, plan.remote)
        if spec.echo and plan.remote is not None:
            self._echo_shared[plan.remote] = self._echo_shared.get(plan.remote, 0) + 1
        if out is not None:
            self.schedule.add(key, out)
        self.streams_started += 1
        return media

    def update(self, key: int, plan: StreamPlan, now: float) -> None:
        """A new offer/answer on the call: hold, resume, or a moved address."""
        media = self.calls.get(key)
        if media is None:
            return
        if plan.remote != media.remote:
            self._unindex(key, media.remote)
            self._echo_release(media)
            if plan.remote is not None:
                media.move(plan.remote)
                if media.echo:
                    self._echo_shared[plan.remote] = self._echo_shared.get(plan.remote, 0) + 1
            self._index(key, plan.remote)
        if plan.remote_ssrc != media.remote_ssrc:
            self._remote_ssrc(key, media.remote_ssrc, plan.remote_ssrc)
        current = media.srtp
        if plan.srtp is None:
            if current is not None:
                media.secure(None)
        elif current is None or current.keys != plan.srtp:
            media.secure(SrtpStream(plan.srtp, echo=media.echo))
        out = media.out
        if out is not None:
            if plan.event_pt >= 0:
                out.event_pt = plan.event_pt
            if plan.send:
                out.resume()
            else:
                out.pause()

    def stop(self, key: int, now: float) -> dict[str, float] | None:
        """End a call's media; its final RTCP packet (with BYE) waits in the outbox.

        Returns:
            The call's figures, or None when it had no media.
        """
        media = self.calls.pop(key, None)
        if media is None:
            return None
        self.schedule.remove(key)
        self._by_ssrc.pop(media.ssrc, None)
        self._own.pop(media.ssrc, None)
        self._retired[media.ssrc] = None
        if len(self._retired) > RETIRED:  # oldest first: dicts keep insertion order
            del self._retired[next(iter(self._retired))]
        self._unindex(key, media.remote)
        self._remote_ssrc(key, media.remote_ssrc, -1)
        self._echo_release(media)
        dest = media.remote_rtcp
        if dest is not None:
            bye = media.rtcp_bye(now)
            if bye is not None:
                self._rtcp_outbox.append((bye, dest))
        return media.figures()

    def take_rtcp_outbox(self) -> list[tuple[bytes, Address]]:
        """The final RTCP packets of calls that stopped since the last call."""
        out = self._rtcp_outbox
        self._rtcp_outbox = []
        return out

    def get(self, key: int) -> CallMedia | None:
        return self.calls.get(key)

    def reserve_ssrc(self, key: int) -> int:
        """Our SSRC for ``key``'s stream, drawn now so that our SDP can announce it."""
        got = self._reserved.get(key)
        if got is not None:
            return got
        media = self.calls.get(key)
        if media is not None:
            return media.ssrc
        while True:
            ssrc = self.random_bits() & 0xFFFFFFFF
            if ssrc not in self._by_ssrc and ssrc not in self._retired and \
                    ssrc not in self._reserved.values():
                self._reserved[key] = ssrc
                return ssrc

    def forget(self, key: int) -> None:
        """Drop a reserved SSRC of a call that never started media."""
        self._reserved.pop(key, None)

    def _remote_ssrc(self, key: int, old: int, new: int) -> None:
        if old >= 0 and self._by_remote_ssrc.get(old) == key:
            del self._by_remote_ssrc[old]
        media = self.calls.get(key)
        if media is not None:
            media.remote_ssrc = new
        if new >= 0:
            self._by_remote_ssrc[new] = key

    def _echo_release(self, media: CallMedia) -> None:
        if media.echo and media.remote is not None:
            left = self._echo_shared.get(media.remote, 0) - 1
            if left > 0:
                self._echo_shared[media.remote] = left
            else:
                self._echo_shared.pop(media.remote, None)

    def _index(self, key: int, remote: Address | None) -> None:
        if remote is None:
            return
        media = self.calls.get(key)
        if media is not None and media.remote_ssrc < 0:
            self._unlatched.setdefault(remote, {})[key] = None
        rtcp_addr = (remote[0], remote[1] + 1)
        if remote in self._shared:
            return
        other = self._by_addr.get(remote)
        if other is not None and other != key:
            self._shared.add(remote)
            del self._by_addr[remote]
            self._by_rtcp.pop(rtcp_addr, None)
            return
        self._by_addr[remote] = key
        self._by_rtcp[rtcp_addr] = key

    def _unindex(self, key: int, remote: Address | None) -> None:
        if remote is None:
            return
        waiting = self._unlatched.get(remote)
        if waiting is not None:
            waiting.pop(key, None)
            if not waiting:
                del self._unlatched[remote]
        if self._by_addr.get(remote) == key:
            del self._by_addr[remote]
            self._by_rtcp.pop((remote[0], remote[1] + 1), None)

    # -- receiving --------------------------------------------------------------

    def on_rtp_batch(self, datagrams: list[tuple[bytes, Address, float]], offset: float,
                     echoes: list[bytes], dests: list[Address]) -> None:
        """Route a batch of datagrams read from the RTP port, in arrival order.

        Args:
            datagrams: ``(data, source, stamp)`` as read, stamps on the shell's clock.
            offset: subtracted from each stamp to give the table's time.
            echoes, dests: the packets to send back and where are appended here.
        """
        own = self._own
        for data, source_addr, stamp in datagrams:
            # the common case first: our own stream echoed back, found by its SSRC
            media = own.get(_SSRC.unpack_from(data, 8)[0]) if len(data) >= 12 and \
                data[0] >> 6 == 2 else None
            if media is not None:
                back = media.on_rtp(data, source_addr, stamp - offset)
            else:
                back = self.on_rtp(data, source_addr, stamp - offset)
            if back is not None:
                echoes.append(back)
                dests.append(source_addr)

    def on_rtp(self, data: bytes, source_addr: Address, stamp: float) -> bytes | None:
        """Route one datagram read from the RTP port; returns a packet to echo, or None."""
        key = -1
        ssrc = -1
        if len(data) >= 12 and data[0] >> 6 == 2:
            ssrc = _SSRC.unpack_from(data, 8)[0]
            key = self._by_ssrc.get(ssrc, -1)
            if key < 0:
                key = self._by_remote_ssrc.get(ssrc, -1)
            if key < 0 and ssrc in self._retired:
                self.after_stop += 1  # an echo of a call that has ended
                return None
        if key < 0:
            key = self._by_addr.get(source_addr, -1)
            if ssrc >= 0 and source_addr in self._unlatched and not is_rtcp(data):
                key = self._latch(key, source_addr, ssrc, data)
        media = self.calls.get(key) if key >= 0 else None
        if media is None:
            if (self.echo_all or source_addr in self._echo_shared) and len(data) >= 12 \
                    and data[0] >> 6 == 2:
                # echo calls share this far-end address and the SSRC says nothing:
                # returning the packet needs no attribution
                self.echoed_unattributed += 1
                return data
            self.foreign += 1
            return None
        return media.on_rtp(data, source_addr, stamp)

    def _latch(self, key: int, source_addr: Address, ssrc: int, data: bytes) -> int:
        """Bind an unknown far-end SSRC from ``source_addr`` to a call; returns its key.

        ``key`` is the call the address alone names (-1: none, or shared): it takes the
        SSRC if it has none yet; otherwise the oldest call at that address without one.
        Only a packet that parses binds (a malformed one's SSRC may be anything).
        """
        waiting = self._unlatched.get(source_addr)
        if not waiting:
            return key
        try:
            parse_rtp(data)
        except MediaParseError:
            return key
        if key < 0:
            key = next(iter(waiting))
        elif key not in waiting:
            return key
        del waiting[key]
        if not waiting:
            del self._unlatched[source_addr]
        self._remote_ssrc(key, -1, ssrc)
        return key

    def on_rtcp(self, data: bytes, source_addr: Address, stamp: float) -> None:
        """Route one datagram read from the RTCP port."""
        key = self._by_rtcp.get(source_addr, -1)
        if key < 0 and len(data) >= 8:
            key = self._by_ssrc.get(int.from_bytes(data[4:8], "big"), -1)
        media = self.calls.get(key) if key >= 0 else None
        if media is None:
            self.foreign += 1
            return
        media.on_rtcp(data, stamp)

    # -- sending ----------------------------------------------------------------

    def due(self, now: float) -> list[Tick]:
        """The RTP ticks due at ``now``."""
        return self.schedule.due(now)

    def sending(self) -> bool:
        """True while any outgoing stream is on the grid (the shell then reads at each tick)."""
        return bool(self.schedule.streams)

    def packets_skipped(self) -> int:
        """Packets not sent over the table's life because their tick came too late."""
        return self.schedule.skipped_packets

    def rtcp_due(self, now: float) -> list[tuple[bytes, Address]]:
        """The RTCP reports due at ``now`` (polled at most every RTCP_POLL seconds)."""
        out: list[tuple[bytes, Address]] = []
        if now < self._next_rtcp_poll:
            return out
        self._next_rtcp_poll = now + RTCP_POLL
        for media in self.calls.values():
            dest = media.remote_rtcp
            if dest is None:
                continue
            packet = media.rtcp_due(now)
            if packet is not None:
                out.append((packet, dest))
        return out

    def next_deadline(self) -> float | None:
        """The next tick, or the next RTCP poll when no stream sends."""
        tick = self.schedule.next_deadline()
        if tick is not None:
            return tick
        return self._next_rtcp_poll if self.calls else None
