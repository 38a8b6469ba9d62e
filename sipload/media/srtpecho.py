"""SRTP for the default UAS (``sipload uas --srtp sdes``): keyed answers and per-call echoes.

Theory of operation:

1. The default UAS echoes plain RTP without any per-call state (the table's
   ``echo_all``).  SRTP cannot work that way: each call has its own keys.  So an
   RTP/SAVP offer is answered here: :meth:`SrtpEcho.answer` picks the first
   offered ``a=crypto`` line it can use (RFC 4568 §7.1.1), puts its own line (the
   same tag and suite, a fresh key) in the answer, and starts an echo stream for
   the call in the :class:`MediaTable` with both keys; that stream unprotects what
   arrives and protects what it returns.
2. An RTP/AVP offer is left as it is (answered and echoed as before).
3. An RTP/SAVP offer with no usable crypto line gives the reason instead of an
   answer: the UAS then answers 488 with it in a Warning header, and counts it.
4. :meth:`SrtpEcho.release` ends the call's stream when the call is gone.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipload.media import sdes
from sipload.media.negotiate import MediaPlanError, plan_stream
from sipload.media.table import MediaSpec, MediaTable
from sipload.sip import sdp


class SrtpEcho:
    """The SRTP calls of a default UAS, on its worker's media table.

    Attributes:
        refused: SRTP offers that could not be keyed (answered 488).
    """

    def __init__(self, table: MediaTable,
                 suites: Sequence[str] = sdes.DEFAULT_SUITES) -> None:
        self.table = table
        self.spec = MediaSpec(echo=True, play="silence", srtp="sdes", suites=tuple(suites))
        self._answered: dict[int, sdes.Crypto] = {}
        self.refused = 0

    def answer(self, cid: int, offer: sdp.SessionDescription,
               answer: sdp.SessionDescription, now: float) -> sdp.SessionDescription | str:
        """Key the RTP/SAVP streams of ``answer`` (built for ``offer``) and start the
        call's echo; returns the answer, or why SRTP was offered and could not be
        keyed."""
        secure = False
        why = ""
        for index, md in enumerate(answer.media):
            if md.port == 0 or md.proto != sdes.SAVP or index >= len(offer.media):
                continue
            try:
                chosen = sdes.choose(sdes.crypto_lines(offer.media[index]), self.spec.suites)
            except sdes.CryptoError as e:
                why = str(e)
                md.port = 0
                md.attributes = []
                continue
            mine = self._answered.get(cid)
            if mine is None or (mine.tag, mine.suite) != (chosen.tag, chosen.suite):
                mine = sdes.answer_line(chosen, self.table.random_bytes)
                self._answered[cid] = mine
            sdes.with_crypto(md, [mine])
            secure = True
        if not secure:
            if why:
                self.refused += 1
                return f"SRTP: {why}"
            return answer
        try:
            plan = plan_stream(answer, offer, False, self.spec.suites)
        except MediaPlanError as e:
            self.refused += 1
            return str(e)
        self.table.start(cid, self.spec, plan, now)
        return answer

    def release(self, cid: int, now: float) -> None:
        """The call is gone: end its echo stream (if it had one)."""
        self._answered.pop(cid, None)
        self.table.stop(cid, now)
        self.table.forget(cid)
