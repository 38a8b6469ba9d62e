"""What the coordinator shows while a run goes on.

On a terminal: a rich live panel (elapsed, target and actual rate, calls in
progress, succeeded and failed, latency percentiles, retransmissions, one row
per worker with its CPU, loop lag, late starts and memory (RSS); with RTP, a media row: packets
per second sent and received, streams running, loss so far, MOS p50/p5 of the calls
ended so far; over TCP/TLS, a connections row: opened, TLS handshakes, resumed,
handshake p50/p99, TLS failures so far).  Elsewhere (CI logs): one plain progress line
every few seconds, with the same media and connection figures.  rich is imported
only for the panel (a run that is not on a terminal, or quiet, never imports it).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from sipload.stats.connintervals import ConnectionTotals
from sipload.stats.histograms import MarkHistograms
from sipload.stats.mediaintervals import MediaHistograms
from sipload.stats.msround import fmt_ms

if TYPE_CHECKING:
    from rich.console import Group
    from rich.live import Live

PLAIN_EVERY = 5.0


class LiveView:
    """Aggregates snapshots as they arrive and renders them."""

    def __init__(self, plan: dict[str, Any], *, quiet: bool = False,
                 tty: bool | None = None) -> None:
        self.plan = plan
        self.quiet = quiet
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.t_start = time.monotonic()
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.retransmissions = 0
        self.late = 0
        self.active: dict[int, int] = {}
        self.health: dict[int, dict[str, float]] = {}
        self.recent: list[tuple[float, int]] = []  # (wall time, calls started)
        self.hist = MarkHistograms()
        self.notes: list[str] = []
        self.target_rate: dict[int, float] = {}
        self.media_seen = False
        self.media_totals = {"sent": 0, "received": 0, "expected": 0, "lost": 0}
        self.media_streams: dict[int, int] = {}
        self.media_hist = MediaHistograms()
        self.media_recent: list[tuple[float, int, int]] = []  # (wall, sent, received)
        self.conns = ConnectionTotals()
        self._live: Live | None = None
        self._last_plain = 0.0
        self._workers_line = ""

    def start(self) -> None:
        if self.quiet:
            return
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(highlight=False),
                              refresh_per_second=2,
                              transient=False)
            self._live.start()
        else:
            print(f"sipload: run {self.plan.get('scenario_name', '')} -> "
                  f"{self.plan.get('target_text', '')}, rate {self.plan.get('rate')}/s",
                  flush=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
        elif not self.quiet and not self.tty:
            self._plain(force=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        if not self.quiet and not self.tty:
            print(f"sipload: {text}", flush=True)

    def note_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "worker_lost":
            self.note(f"worker {ev.get('worker')} lost ({ev.get('reason')}); "
                      f"{ev.get('calls_lost')} calls lost with it")
        elif kind == "worker_failed":
            self.note(f"worker {ev.get('worker')} failed: {ev.get('reason')}")
        elif kind == "worker_refused":
            self.note(f"a worker from {ev.get('host')} was refused: {ev.get('reason')}")

    def records(self, records: list[dict[str, Any]]) -> None:
        pass  # counts come from snapshots, which cover every record

    def snapshot(self, s: dict[str, Any]) -> None:
        w = int(s.get("worker", 0))
        self.started += int(s.get("started", 0))
        self.succeeded += int(s.get("succeeded", 0))
        self.failed += int(s.get("failed", 0))
        self.retransmissions += int(s.get("retransmissions", 0))
        self.late += int(s.get("late", 0))
        self.active[w] = int(s.get("active", 0))
        self.target_rate[w] = float(s.get("target_rate", 0.0))
        self.health[w] = {"cpu": float(s.get("cpu", 0.0)),
                          "lag": float(s.get("loop_lag_ms", 0.0)),
                          "late": float(s.get("late", 0)),
                          "rss": float(s.get("rss_mib") or 0.0)}
        hist = s.get("histograms") or {}
        if hist:
            self.hist.merge(MarkHistograms.decode(hist))
        now = time.monotonic()
        self._media(w, s.get("media"), now)
        conns = s.get("connections")
        if isinstance(conns, dict):
            self.conns.add(conns)
        self.recent.append((now, self.started))
        self.recent = [r for r in self.recent if now - r[0] <= 5.0]
        if self._live is not None:
            self._live.update(self._render())
        elif not self.quiet:
            self._plain()

    def _media(self, worker: int, m: Any, now: float) -> None:
        if not isinstance(m, dict):
            return
        self.media_seen = True
        for key in self.media_totals:
            v = m.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                self.media_totals[key] += v
        streams = m.get("streams")
        if isinstance(streams, int):
            self.media_streams[worker] = streams
        hist = m.get("histograms")
        if isinstance(hist, dict) and hist:
            try:
                self.media_hist.merge(MediaHistograms.decode(hist))
            except Exception:  # the coordinator checked it; a view never dies of it
                pass
        self.media_recent.append((now, self.media_totals["sent"], self.media_totals["received"]))
        self.media_recent = [r for r in self.media_recent if now - r[0] <= 5.0]

    def _media_line(self) -> str:
        """Packets/s sent and received, streams, loss and MOS so far ("" without RTP)."""
        if not self.media_seen:
            return ""
        sent_ps = recv_ps = 0.0
        if len(self.media_recent) >= 2:
            (t1, s1, r1), (t2, s2, r2) = self.media_recent[0], self.media_recent[-1]
            span = max(t2 - t1, 1e-6)
            sent_ps, recv_ps = (s2 - s1) / span, (r2 - r1) / span
        tot = self.media_totals
        loss = f"{max(tot['lost'], 0) / tot['expected']:.2%}" if tot["expected"] > 0 else "-"
        p50, p5 = self.media_hist.mos_at(50), self.media_hist.mos_at(5)
        mos = f"MOS p50 {p50:.2f} p5 {p5:.2f}" if p50 is not None and p5 is not None \
            else "MOS -"
        return (f"rtp {sent_ps:.0f}/s out, {recv_ps:.0f}/s in, "
                f"{sum(self.media_streams.values())} streams, loss {loss} "
                f"({max(tot['lost'], 0)} of {tot['expected']}), {mos}")

    def _conns_line(self) -> str:
        """Connections opened, TLS handshakes, resumed, p50/p99, failures ("" without)."""
        c = self.conns
        if not c.seen:
            return ""
        text = f"conns {c.opened}"
        if c.handshakes or c.failures:
            text += f", tls {c.handshakes} handshakes {c.resumed} resumed"
            hs = c.handshake_ms()
            if hs is not None:
                text += f" p50 {fmt_ms(hs['p50'])} ms p99 {fmt_ms(hs['p99'])} ms"
            if c.failures:
                text += ", tls failures " + " ".join(f"{k} {v}" for k, v
                                                     in sorted(c.failures.items()))
        return text

    def workers(self, coord: Any) -> None:
        live = len([w for w in coord.workers.values() if not w.lost])
        self._workers_line = f"{live}/{coord.workers_expected} workers"

    def _rate(self) -> float:
        if len(self.recent) < 2:
            return 0.0
        (t1, c1), (t2, c2) = self.recent[0], self.recent[-1]
        return (c2 - c1) / max(t2 - t1, 1e-6)

    def _percentiles(self) -> str:
        summary = self.hist.summary(("answer", "call"))  # a second's figures: only these
        mark = "answer" if "answer" in summary else ("call" if "call" in summary else None)
        if mark is None:
            return "-"
        r = summary[mark]
        return (f"{mark} p50 {fmt_ms(r['p50'])} ms  p95 {fmt_ms(r['p95'])} ms  "
                f"p99 {fmt_ms(r['p99'])} ms")

    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < PLAIN_EVERY:
            return
        self._last_plain = now
        elapsed = now - self.t_start
        print(f"sipload: {elapsed:6.1f}s started {self.started} ok {self.succeeded} "
              f"failed {self.failed} active {sum(self.active.values())} "
              f"rate {self._rate():.1f}/s target {sum(self.target_rate.values()):.1f}/s "
              f"retrans {self.retransmissions} late {self.late} | {self._percentiles()}"
              + (f" | {media}" if (media := self._media_line()) else "")
              + (f" | {conns}" if (conns := self._conns_line()) else ""),
              flush=True)

    def _render(self) -> Group:
        from rich.console import Group
        from rich.table import Table

        elapsed = time.monotonic() - self.t_start
        head = Table.grid(padding=(0, 2))
        head.add_row("elapsed", f"{elapsed:.1f} s", "target rate",
                     f"{sum(self.target_rate.values()):.1f}/s", "actual", f"{self._rate():.1f}/s")
        head.add_row("in progress", str(sum(self.active.values())), "succeeded",
                     str(self.succeeded), "failed", str(self.failed))
        head.add_row("retransmissions", str(self.retransmissions), "late starts",
                     str(self.late), "workers", self._workers_line)
        head.add_row("latency", self._percentiles(), "", "", "", "")
        media = self._media_line()
        if media:
            head.add_row("media", media, "", "", "", "")
        conns = self._conns_line()
        if conns:
            head.add_row("connections", conns, "", "", "", "")
        table = Table(title="workers", show_edge=False)
        for col in ("worker", "cpu", "loop lag ms", "late", "in progress", "memory MiB"):
            table.add_column(col, justify="right")
        for w, h in sorted(self.health.items()):
            table.add_row(str(w), f"{h['cpu'] * 100:.0f}%", f"{h['lag']:.1f}",
                          f"{h['late']:.0f}", str(self.active.get(w, 0)),
                          f"{h['rss']:.0f}" if h["rss"] > 0 else "-")
        parts: list[Any] = [head, table]
        parts.extend(self.notes[-3:])
        return Group(*parts)
