"""Mean opinion score from the ITU-T G.107 E-model (narrowband, default parameters).

The E-model rates a connection by the transmission rating factor (G.107 §7.1)::

    R = Ro − Is − Id − Ie,eff + A

* ``Ro − Is``: with every G.107 default (§7.7, Table 3: SLR 8 dB, RLR 2 dB,
  STMR 15 dB, LSTR 18 dB, Ds 3, Dr 3, TELR 65 dB, WEPL 110 dB, Nc −70 dBm0p,
  Ps = Pr = 35 dB(A), Nfor −64 dBmp, qdu 1) these are Ro = 94.77 and Is = 1.41;
  a call cannot change them, so they are constants here.
* ``Id = Idte + Idle + Idd`` (§7.4), computed from the mean one-way delay
  ``Ta`` (ms) with the default echo path (T = Ta, Tr = 2·Ta):

  - talker echo: ``TERV = TELR − 40·log10((1 + T/10)/(1 + T/150)) + 6·e^(−0.3·T²)``,
    ``Re = 80 + 2.5·(TERV − 14)``, ``Roe = −1.5·(No − 2)`` with No = −61.18 dBm0p,
    ``Idte = ((Roe − Re)/2 + √((Roe − Re)²/4 + 100) − 1)·(1 − e^(−T))``;
  - listener echo: ``Rle = 10.5·(WEPL + 7)·(Tr + 1)^(−1/4)``,
    ``Idle = (Ro − Rle)/2 + √((Ro − Rle)²/4 + 169)``;
  - absolute delay: ``Idd = 0`` for Ta ≤ 100 ms, else with ``X = log2(Ta/100)``,
    ``Idd = 25·((1 + X⁶)^(1/6) − 3·(1 + (X/3)⁶)^(1/6) + 2)``.

  At Ta = 0 this gives Id = 0.15 and the familiar default R = 93.2.
* ``Ie,eff = Ie + (95 − Ie)·Ppl/(Ppl/BurstR + Bpl)`` (§7.5) with the codec's
  equipment impairment ``Ie`` and packet-loss robustness ``Bpl`` from ITU-T G.113
  Appendix I: G.711 with packet-loss concealment (G.711 Appendix I), Ie = 0,
  Bpl = 25.1 (4.3 without concealment).  ``Ppl`` is the effective loss in percent
  and ``BurstR`` the burst ratio (1 for random loss).
* ``A = 0`` (advantage factor of a wired connection).

MOS (G.107 Annex B): 1 for R < 0, 4.5 for R > 100, else
``1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶``.

What sipload feeds in (see :func:`call_mos`): Ppl is the stream's lost share of
expected packets; BurstR comes from the loss runs; the delay is the sum of the
network's one-way delay (half the RTCP round-trip time when the far end reported
one, else 0), one packetisation interval, and a jitter buffer modelled as
max(ptime, 2 × the stream's largest A.8 jitter).
"""

from __future__ import annotations

import math

RO = 94.77
IS = 1.41
NO = -61.18
TELR = 65.0
WEPL = 110.0
A = 0.0

#: Codec -> (Ie, Bpl), ITU-T G.113 Appendix I (G.711 with packet-loss concealment).
CODEC_IMPAIRMENT: dict[str, tuple[float, float]] = {
    "PCMU": (0.0, 25.1),
    "PCMA": (0.0, 25.1),
}


def delay_impairment(ta_ms: float) -> float:
    """Id = Idte + Idle + Idd for a mean one-way delay of ``ta_ms`` (G.107 §7.4)."""
    t = max(ta_ms, 0.0)
    tr = 2.0 * t
    terv = TELR - 40.0 * math.log10((1.0 + t / 10.0) / (1.0 + t / 150.0)) \
        + 6.0 * math.exp(-0.3 * t * t)
    re = 80.0 + 2.5 * (terv - 14.0)
    roe = -1.5 * (NO - 2.0)
    idte = ((roe - re) / 2.0 + math.sqrt((roe - re) ** 2 / 4.0 + 100.0) - 1.0) \
        * (1.0 - math.exp(-t))
    rle = 10.5 * (WEPL + 7.0) * math.pow(tr + 1.0, -0.25)
    idle = (RO - rle) / 2.0 + math.sqrt((RO - rle) ** 2 / 4.0 + 169.0)
    idd = 0.0
    if t > 100.0:
        x = math.log2(t / 100.0)
        idd = 25.0 * (math.pow(1.0 + x ** 6, 1.0 / 6.0)
                      - 3.0 * math.pow(1.0 + (x / 3.0) ** 6, 1.0 / 6.0) + 2.0)
    return idte + idle + idd


def effective_equipment_impairment(codec: str, loss_percent: float, burst_ratio: float) -> float:
    """Ie,eff (G.107 §7.5) for ``codec`` at ``loss_percent`` of packets lost."""
    ie, bpl = CODEC_IMPAIRMENT.get(codec, CODEC_IMPAIRMENT["PCMU"])
    ppl = min(max(loss_percent, 0.0), 100.0)
    burst = max(burst_ratio, 1e-9)
    return ie + (95.0 - ie) * ppl / (ppl / burst + bpl)


def r_factor(codec: str, loss_percent: float, burst_ratio: float, delay_ms: float) -> float:
    """The transmission rating factor R."""
    r: float = RO - IS - delay_impairment(delay_ms) \
        - effective_equipment_impairment(codec, loss_percent, burst_ratio) + A
    return r


def mos_from_r(r: float) -> float:
    """MOS-CQE from R (G.107 Annex B)."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    # the cubic dips just below 1 for R under ~6.5: MOS is 1 at worst
    return max(1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6, 1.0)


def call_mos(codec: str, loss_rate: float, burst_ratio: float, ptime_s: float,
             max_jitter_s: float, rtt_s: float | None) -> tuple[float, float]:
    """(R, MOS) of one received stream, with the delay model described above.

    Args:
        codec: "PCMU" or "PCMA".
        loss_rate: lost share of expected packets, 0-1.
        burst_ratio: BurstR (1 for random loss).
        ptime_s: packetisation interval, seconds.
        max_jitter_s: the stream's largest A.8 jitter, seconds.
        rtt_s: RTCP round-trip time, seconds, or None when unknown.
    """
    network = rtt_s / 2.0 if rtt_s is not None and rtt_s > 0 else 0.0
    buffer = max(ptime_s, 2.0 * max_jitter_s)
    delay_ms = (network + ptime_s + buffer) * 1000.0
    r = r_factor(codec, loss_rate * 100.0, burst_ratio, delay_ms)
    return r, mos_from_r(r)
