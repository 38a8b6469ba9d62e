"""The report's charts: matplotlib figures rendered to PNG data URIs.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly,
never through pyplot, so no global backend or figure registry is touched (the
report runs inside the coordinator process); :mod:`sipload.report.mplimport`
imports them without matplotlib's docstring work.  Each function returns a
``data:image/png;base64,...`` URI, or None when the run has nothing to draw.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from sipload.report.analysis import Analysis
from sipload.report.hist import SERIES_PERCENTILES, distribution_ms
from sipload.report.media import MediaAnalysis
from sipload.report.mplimport import Axes, Figure, FigureCanvasAgg, NullLocator, to_rgba

DPI = 80
WIDTH = 9.0
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


#: Margins of a chart, in inches: room for the y tick labels and label, the title and the
#: x label.  Fixed margins let a chart be drawn once; ``bbox_inches="tight"`` draws it
#: twice (once to measure), a third of the report's rendering time.
LEFT, RIGHT, TOP, BOTTOM, GAP = 0.95, 0.45, 0.4, 0.55, 0.3

#: zlib's level for the PNGs: 3 encodes the report's charts in two thirds of the time of
#: the default 6 (17 ms of a run's CPU for six charts), for PNGs 8% larger; same pixels.
PNG_LEVEL = 3


def _png(fig: Figure, tight: bool = False) -> str:
    """The figure as a PNG data URI; ``tight``: crop to what was drawn (drawn twice).

    Drawn on the Agg canvas and written as an RGB PNG by PIL directly (what
    ``savefig`` does for a figure already at :data:`DPI`, less its per-call set-up):
    an opaque figure (white, unless a matplotlibrc says otherwise) loses nothing
    with the alpha channel ``savefig`` keeps, and its PNG is a tenth smaller."""
    canvas = FigureCanvasAgg(fig)
    buf = io.BytesIO()
    if tight:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",
                    pil_kwargs={"compress_level": PNG_LEVEL})
    else:
        canvas.draw()  # type: ignore[no-untyped-call]
        rgba = canvas.buffer_rgba()  # type: ignore[no-untyped-call]
        image = Image.frombuffer("RGBA", canvas.get_width_height(), rgba, "raw", "RGBA", 0, 1)
        opaque = to_rgba(fig.get_facecolor())[3] >= 1.0
        (image.convert("RGB") if opaque else image).save(buf, format="png",
                                                         compress_level=PNG_LEVEL)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _title(ax: Axes, text: str) -> None:
    """Set ``ax``'s title at the top of the axes (``y=1``), where matplotlib's automatic
    placement puts it when nothing is drawn above the axes (no top ticks; a y offset
    text such as "1e6" moves it only if the two overlap): automatic placement measures
    every y tick label again on each draw to decide that (5% of the Python calls of
    drawing the charts)."""
    ax.set_title(text, y=1.0)


def _figure(rows: int = 1, height: float = 3.0) -> tuple[Figure, list[Axes]]:
    total = height * rows
    fig = Figure(figsize=(WIDTH, total), dpi=DPI)  # drawn at its own DPI: no switch
    fig.subplots_adjust(left=LEFT / WIDTH, right=1 - RIGHT / WIDTH, top=1 - TOP / total,
                        bottom=BOTTOM / total, hspace=GAP / max(height - GAP, 0.5))
    axes = fig.subplots(rows, 1, sharex=rows > 1, squeeze=False)
    out: list[Axes] = [ax for row in axes for ax in row]
    for ax in out:
        ax.grid(True, alpha=0.3)
        ax.set_prop_cycle(color=PALETTE)
    return fig, out


def rate_chart(a: Analysis, target: float | None) -> str | None:
    ps = a.per_second
    if not len(ps):
        return None
    fig, (ax,) = _figure()
    ax.plot(ps["second"], ps["started"], label="achieved (calls started / s)")
    tr = ps["target_rate"]
    if float(tr.max()) > 0:
        ax.plot(ps["second"], tr, "--", label="target (workers' pacers)")
    elif target:
        ax.axhline(target, linestyle="--", color=PALETTE[1], label="target")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("calls / s")
    _title(ax, "Target vs achieved call rate")
    ax.legend(loc="lower right")
    return _png(fig)


def concurrency_chart(a: Analysis) -> str | None:
    ps = a.per_second
    if not len(ps):
        return None
    fig, (ax,) = _figure()
    ax.fill_between(ps["second"], ps["active"], step="mid", alpha=0.4)
    ax.plot(ps["second"], ps["active"], drawstyle="steps-mid")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("calls in progress")
    _title(ax, "Calls in progress (sampled each second, all workers)")
    return _png(fig)


def latency_series_chart(a: Analysis) -> str | None:
    lat = a.latency
    if not lat.series_t:
        return None
    fig, (ax,) = _figure()
    t = np.array(lat.series_t)
    for p in SERIES_PERCENTILES:
        ys = np.array([np.nan if v is None else v for v in lat.series[p]], dtype=float)
        ax.plot(t, ys, label=f"p{p:g}")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("ms")
    _title(ax, f"'{lat.series_mark}' latency percentiles per second")
    ax.legend(loc="upper left")
    return _png(fig)


def distribution_chart(a: Analysis) -> str | None:
    marks = sorted(a.latency.total.by_mark)
    if not marks:
        return None
    fig, (ax,) = _figure(height=3.6)
    for mark in marks:
        counts = a.latency.counts(mark)
        if counts is None:
            continue
        ps, values = distribution_ms(counts)
        if not len(ps):
            continue
        ax.plot(1.0 / (1.0 - ps / 100.0), values, label=mark)
    ax.set_xscale("log")
    # no minor ticks between the "nines": ~80 tick objects, a third of this chart's CPU
    ax.xaxis.set_minor_locator(NullLocator())
    ticks = [1, 2, 10, 100, 1000, 10_000, 100_000, 1_000_000]
    labels = ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
    ax.set_xticks(ticks, labels)
    ax.set_xlim(1, None)
    ax.set_xlabel("percentile")
    ax.set_ylabel("ms")
    _title(ax, "Latency distribution per timing mark (HdrHistogram percentiles)")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def codes_chart(a: Analysis, top: int = 8) -> str | None:
    codes = a.codes_per_second
    names = [c for c in codes.columns if c != "second"]
    if not len(codes) or not names:
        return None
    totals = {c: float(codes[c].sum()) for c in names}
    order = sorted(names, key=lambda c: -totals[c])[:top]
    fig, (ax,) = _figure()
    for code in sorted(order, key=str):
        ax.plot(codes["second"], codes[code], label=str(code))
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("responses / s")
    _title(ax, "Response codes received per second (by arrival)")
    ax.legend(loc="upper left", fontsize="small", ncols=4)
    return _png(fig)


def failures_chart(failures: dict[str, int]) -> str | None:
    if not failures:
        return None
    items = sorted(failures.items(), key=lambda kv: kv[1])
    fig, (ax,) = _figure(height=0.4 * len(items) + 1.2)
    ax.barh([k for k, _ in items], [v for _, v in items], color=PALETTE[1])
    for y, (_, v) in enumerate(items):
        ax.annotate(f" {v}", (v, y), va="center")
    ax.set_xlabel("failed calls")
    _title(ax, "Failures by reason")
    return _png(fig, tight=True)  # the reasons' names are as long as they are


def retransmissions_chart(a: Analysis) -> str | None:
    ps = a.per_second
    if not len(ps) or int(ps["retransmissions"].sum()) == 0:
        return None
    fig, (ax,) = _figure()
    ax.bar(ps["second"], ps["retransmissions"], width=1.0, color=PALETTE[3])
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("retransmissions / s")
    _title(ax, "Retransmissions per second (all workers)")
    return _png(fig)


def workers_chart(a: Analysis) -> str | None:
    frame = a.per_worker
    if not len(frame):
        return None
    titles = [("started", "calls started / s"), ("cpu", "CPU (1 = one core)"),
              ("loop_lag_ms", "loop lag (ms)")]
    if bool((frame["rss_mib"] > 0).any()):  # a memory that keeps growing is a leak
        titles.append(("rss_mib", "memory (RSS, MiB)"))
    fig, axes = _figure(rows=len(titles), height=2.2)
    ids = frame["worker"]
    groups = [(worker, ids == worker) for worker in sorted(set(ids.tolist()))]
    for ax, (col, label) in zip(axes, titles, strict=True):
        for worker, mine in groups:
            ax.plot(frame["second"][mine], frame[col][mine], label=f"worker {worker}")
        ax.set_ylabel(label, fontsize="small")
    axes[1].axhline(0.95, linestyle=":", color="#444")
    axes[2].axhline(100.0, linestyle=":", color="#444")
    _title(axes[0], "Per-worker load and health")
    axes[-1].set_xlabel("seconds since start")
    if len(groups) <= 12:
        axes[0].legend(loc="upper left", fontsize="small", ncols=4)
    return _png(fig)


def all_charts(a: Analysis, target: float | None) -> list[tuple[str, str]]:
    """(title, data URI) of every chart that has data, in report order."""
    makers: list[tuple[str, Callable[[], str | None]]] = [
        ("Rate", lambda: rate_chart(a, target)),
        ("Calls in progress", lambda: concurrency_chart(a)),
        ("Latency over time", lambda: latency_series_chart(a)),
        ("Latency distribution", lambda: distribution_chart(a)),
        ("Response codes", lambda: codes_chart(a)),
        ("Failures", lambda: failures_chart(a.failures)),
        ("Retransmissions", lambda: retransmissions_chart(a)),
        ("Workers", lambda: workers_chart(a)),
    ]
    out: list[tuple[str, str]] = []
    for title, make in makers:
        uri = make()
        if uri is not None:
            out.append((title, uri))
    return out


def mos_chart(m: MediaAnalysis) -> str | None:
    """How many calls had each MOS (per-call records), with the p5 and p50 marked."""
    if not len(m.mos):
        return None
    fig, (ax,) = _figure()
    low = min(float(m.mos.min()), 4.0)
    bins = [float(b) for b in np.linspace(np.floor(low * 10) / 10, 4.5, 31)]
    ax.hist(m.mos, bins=bins, color=PALETTE[2])
    for p, style in ((5, ":"), (50, "--")):
        v = float(np.percentile(m.mos, p))
        ax.axvline(v, linestyle=style, color="#444", label=f"p{p} {v:.2f}")
    ax.set_xlabel("MOS (G.107 E-model, per call)")
    ax.set_ylabel("calls")
    _title(ax, "MOS distribution")
    ax.legend(loc="upper left")
    return _png(fig)


def media_series_chart(m: MediaAnalysis) -> str | None:
    """Packets per second and loss over time; jitter and MOS percentiles per second."""
    ps = m.per_second
    if not len(ps):
        return None
    fig, axes = _figure(rows=4, height=2.2)
    axes[0].plot(ps["second"], ps["sent"], label="sent")
    axes[0].plot(ps["second"], ps["received"], label="received")
    axes[0].set_ylabel("RTP packets / s", fontsize="small")
    axes[0].legend(loc="upper left", fontsize="small")
    axes[1].plot(ps["second"], ps["loss_rate"] * 100.0, color=PALETTE[1])
    axes[1].set_ylabel("loss (%)", fontsize="small")
    axes[2].plot(ps["second"], ps["jitter_p50"], "o-", label="p50")
    axes[2].plot(ps["second"], ps["jitter_p95"], "o-", label="p95")
    axes[2].set_ylabel("jitter (ms)", fontsize="small")
    axes[2].legend(loc="upper left", fontsize="small")
    axes[3].plot(ps["second"], ps["mos_p50"], "o-", label="p50")
    axes[3].plot(ps["second"], ps["mos_p5"], "o-", label="p5")
    axes[3].set_ylabel("MOS", fontsize="small")
    axes[3].legend(loc="lower left", fontsize="small")
    _title(axes[0], "Media over time (all workers; jitter and MOS of the calls ended each "
                      "second)")
    axes[-1].set_xlabel("seconds since start")
    return _png(fig)


def media_charts(m: MediaAnalysis) -> list[tuple[str, str]]:
    """(title, data URI) of the media charts that have data (none without media)."""
    out: list[tuple[str, str]] = []
    makers: list[tuple[str, Callable[[], str | None]]] = [
        ("MOS distribution", lambda: mos_chart(m)),
        ("Media over time", lambda: media_series_chart(m))]
    for title, make in makers:
        uri = make()
        if uri is not None:
            out.append((title, uri))
    return out
