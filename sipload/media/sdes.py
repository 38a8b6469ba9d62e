"""SDES key exchange for SRTP (RFC 4568): ``a=crypto`` lines, offers, answers, the keys.

Theory of operation:

1. An offer of ours puts one ``a=crypto`` line per suite we support, in our order
   of preference, each with a key of its own (:func:`offer_lines`), on an
   ``RTP/SAVP`` m-line.  The keys come from the caller (the shell's random source).
2. Answering an offer, :func:`choose` takes the first offered line (the offerer's
   order, RFC 4568 §7.1.1) that we can use: a suite we support, an ``inline:`` key
   of the suite's length that is valid base64, no MKI, no session parameter that
   changes the transform; our answer line keeps its tag and suite with a key of ours
   (:func:`answer_line`).  An offer with no usable line gives a :class:`CryptoError`
   whose message says what was wrong with each line (it becomes the call's reason).
3. When the offer/answer completes, :func:`negotiate` reads both m-lines and gives
   the :class:`Keys` of the stream: the suite, our key (sending) and the far end's
   (receiving).  An answer whose tag we did not offer, or with another suite, or a
   key that does not fit, is a :class:`CryptoError` too.
4. Nothing here encrypts: :mod:`sipload.media.srtp` turns :class:`Keys` into libsrtp
   sessions.  This module parses what the far end sent, so every fault in a line
   (a bad tag, an unknown suite, a short key, garbage base64 ...) is a
   :class:`CryptoError`, never another exception.

Grammar (RFC 4568 §9.1, the parts SRTP uses)::

    crypto-attribute = "crypto:" tag 1*WSP crypto-suite 1*WSP key-params
                       *(1*WSP session-param)
    tag              = 1*9DIGIT
    key-params       = key-param *(";" key-param)
    key-param        = key-method ":" key-info           ; key-method "inline"
    key-info         = key-salt ["|" lifetime] ["|" mki]  ; RFC 4568 §6.1
    lifetime         = ["2^"] 1*(DIGIT)
    mki              = mki-value ":" mki-length
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence

from sipload.sip import sdp

#: The SRTP profile of an m-line with SDES keys (RFC 3711 §1, RFC 4568).
SAVP = "RTP/SAVP"
AVP = "RTP/AVP"


class Suite:
    """An SRTP crypto suite (RFC 4568 §6.2): its key and salt lengths, its tag length."""

    __slots__ = ("key_bytes", "name", "salt_bytes", "tag_bits")

    def __init__(self, name: str, key_bytes: int, salt_bytes: int, tag_bits: int) -> None:
        self.name = name
        self.key_bytes = key_bytes
        self.salt_bytes = salt_bytes
        self.tag_bits = tag_bits

    @property
    def master_bytes(self) -> int:
        """Length of the inline key: master key then master salt."""
        return self.key_bytes + self.salt_bytes


#: The suites sipload speaks, by their SDP name (RFC 4568 §6.2.1, §6.2.2).
SUITES: dict[str, Suite] = {
    "AES_CM_128_HMAC_SHA1_80": Suite("AES_CM_128_HMAC_SHA1_80", 16, 14, 80),
    "AES_CM_128_HMAC_SHA1_32": Suite("AES_CM_128_HMAC_SHA1_32", 16, 14, 32),
}
#: What an offer of ours lists when the scenario names no suites.
DEFAULT_SUITES: tuple[str, ...] = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")

#: Session parameters (RFC 4568 §6.3) that leave the SRTP transform as libsrtp's
#: profile has it: a window size hint, a key derivation rate of 0 (the default).
_HARMLESS = re.compile(r"^(WSH=\d{1,9}|KDR=0)$")
_TAG = re.compile(r"^\d{1,9}$")
_SUITE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_LIFETIME = re.compile(r"^(2\^)?\d{1,20}$")
_MKI = re.compile(r"^\d{1,20}:\d{1,3}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class CryptoError(ValueError):
    """An ``a=crypto`` line (or a set of them) that cannot key a stream; the message
    says why, in words that can stand as a call's failure detail."""


class Crypto:
    """One parsed ``a=crypto`` line.

    Attributes:
        tag: the line's tag (1-999999999): the answer names the offer's line by it.
        suite: the crypto suite's name, as written.
        key: master key then master salt (decoded), or b"" when the line is only
            :func:`parse_crypto`-checked for form.
        lifetime: the key's lifetime as written ("" when absent).
        mki: the MKI as written ("" when absent).
        params: the session parameters, as written.
    """

    __slots__ = ("key", "lifetime", "mki", "params", "suite", "tag")

    def __init__(self, tag: int, suite: str, key: bytes, lifetime: str = "", mki: str = "",
                 params: tuple[str, ...] = ()) -> None:
        self.tag = tag
        self.suite = suite
        self.key = key
        self.lifetime = lifetime
        self.mki = mki
        self.params = params

    def value(self) -> str:
        """The attribute's value (what follows ``a=crypto:``)."""
        info = base64.b64encode(self.key).decode("ascii")
        if self.lifetime:
            info += "|" + self.lifetime
        if self.mki:
            info += "|" + self.mki
        return " ".join((str(self.tag), self.suite, "inline:" + info, *self.params))


class Keys:
    """The SRTP keys of one stream after an offer/answer.

    Attributes:
        suite: the suite both sides use.
        local: our master key and salt (we protect with it).
        remote: the far end's (we unprotect with it).
        tag: the tag of the accepted line.
    """

    __slots__ = ("local", "remote", "suite", "tag")

    def __init__(self, suite: str, local: bytes, remote: bytes, tag: int) -> None:
        self.suite = suite
        self.local = local
        self.remote = remote
        self.tag = tag

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and (self.suite, self.local, self.remote) == (
            other.suite, other.local, other.remote)

    def __hash__(self) -> int:
        return hash((self.suite, self.local, self.remote))


def _short(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


def parse_crypto(value: str) -> Crypto:
    """Parse the value of an ``a=crypto`` attribute (RFC 4568 §9.1).

    The suite is not checked against :data:`SUITES` here, nor the key's length (see
    :func:`usable`); the key is decoded when it is valid base64.

    Raises:
        CryptoError: the line does not follow the grammar.
    """
    words = value.split()
    if len(words) < 3:
        raise CryptoError(f"a=crypto:{_short(value)} needs '<tag> <suite> inline:<key>'")
    tag_text, suite, key_params, *params = words
    if not _TAG.match(tag_text):
        raise CryptoError(f"a=crypto tag {_short(tag_text)!r} is not 1-9 digits")
    if not _SUITE_NAME.match(suite):
        raise CryptoError(f"a=crypto:{tag_text} suite {_short(suite)!r} is not a suite name")
    if ";" in key_params:
        raise CryptoError(f"a=crypto:{tag_text} has several keys (';'): sipload takes one "
                          "key without MKI")
    method, colon, info = key_params.partition(":")
    if not colon or method.lower() != "inline":
        raise CryptoError(f"a=crypto:{tag_text} key {_short(key_params)!r} is not "
                          "'inline:<key||salt>'")
    parts = info.split("|")
    key_text = parts[0]
    lifetime = ""
    mki = ""
    for extra in parts[1:3]:
        if ":" in extra and not mki:
            if not _MKI.match(extra):
                raise CryptoError(f"a=crypto:{tag_text} MKI {_short(extra)!r} is not "
                                  "'<value>:<length>'")
            mki = extra
        elif not lifetime and not mki and _LIFETIME.match(extra):
            lifetime = extra
        else:
            raise CryptoError(f"a=crypto:{tag_text} key parameter {_short(extra)!r} is "
                              "neither a lifetime nor an MKI")
    if len(parts) > 3:
        raise CryptoError(f"a=crypto:{tag_text} key {_short(info)!r} has more than a "
                          "lifetime and an MKI after it")
    if not key_text or not _B64.match(key_text):
        raise CryptoError(f"a=crypto:{tag_text} key {_short(key_text)!r} is not base64")
    try:
        key = base64.b64decode(key_text + "=" * (-len(key_text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise CryptoError(f"a=crypto:{tag_text} key {_short(key_text)!r} is not base64 "
                          f"({e})") from None
    return Crypto(int(tag_text), suite, key, lifetime, mki, tuple(params))


def usable(crypto: Crypto, suites: Sequence[str]) -> Suite:
    """The suite of ``crypto`` when sipload can key a stream with it.

    Raises:
        CryptoError: an unknown suite (or one not in ``suites``), a key of the wrong
            length, an MKI, or a session parameter that changes the transform.
    """
    where = f"a=crypto:{crypto.tag}"
    suite = SUITES.get(crypto.suite)
    if suite is None or crypto.suite not in suites:
        raise CryptoError(f"{where} suite {crypto.suite} is not one sipload uses "
                          f"({', '.join(suites)})")
    if len(crypto.key) != suite.master_bytes:
        raise CryptoError(f"{where} {crypto.suite} key is {len(crypto.key)} bytes; the suite "
                          f"needs {suite.master_bytes} (a {suite.key_bytes}-byte key and a "
                          f"{suite.salt_bytes}-byte salt)")
    if crypto.mki:
        raise CryptoError(f"{where} has an MKI ({crypto.mki}): sipload sends and takes "
                          "SRTP without MKI")
    for param in crypto.params:
        if not _HARMLESS.match(param):
            raise CryptoError(f"{where} session parameter {_short(param)} is not supported "
                              "(sipload encrypts and authenticates every packet)")
    return suite


def crypto_lines(md: sdp.MediaDescription) -> list[str]:
    """The values of an m-line's ``a=crypto`` attributes, in order."""
    return [value or "" for name, value in md.attributes if name == "crypto"]


def offer_lines(suites: Sequence[str], random_bytes: Callable[[int], bytes]) -> list[Crypto]:
    """One line per suite, tags 1, 2, ..., each with a fresh key."""
    return [Crypto(i, name, random_bytes(SUITES[name].master_bytes))
            for i, name in enumerate(suites, 1)]


def choose(offered: Sequence[str], suites: Sequence[str]) -> Crypto:
    """The first offered line we can use (the offerer's order of preference).

    Raises:
        CryptoError: none can be used; the message lists why, line by line.
    """
    why: list[str] = []
    seen: set[int] = set()
    for value in offered:
        try:
            crypto = parse_crypto(value)
            if crypto.tag in seen:
                raise CryptoError(f"a=crypto:{crypto.tag} repeats a tag")
            seen.add(crypto.tag)
            usable(crypto, suites)
        except CryptoError as e:
            why.append(str(e))
            continue
        return crypto
    if not offered:
        raise CryptoError("the RTP/SAVP offer has no a=crypto line (sipload keys SRTP "
                          "with SDES, RFC 4568)")
    raise CryptoError("no usable a=crypto in the offer: " + "; ".join(why))


def answer_line(chosen: Crypto, random_bytes: Callable[[int], bytes]) -> Crypto:
    """Our answer to the offer's line ``chosen``: its tag and suite, a key of ours."""
    return Crypto(chosen.tag, chosen.suite, random_bytes(SUITES[chosen.suite].master_bytes))


def negotiate(local: sdp.MediaDescription, remote: sdp.MediaDescription,
              remote_is_answer: bool, suites: Sequence[str]) -> Keys:
    """The keys of a completed SDES exchange on one m-line.

    Args:
        local: our m-line (offer or answer).
        remote: the far end's m-line.
        remote_is_answer: ``remote`` answers our offer (else we answered it).
        suites: the suites we accept.

    Raises:
        CryptoError: no line, a line that does not parse or cannot be used, or an
            answer that does not match what was offered.
    """
    theirs = crypto_lines(remote)
    ours = crypto_lines(local)
    if remote_is_answer:
        if not theirs:
            raise CryptoError("the RTP/SAVP answer has no a=crypto line")
        if len(theirs) > 1:
            raise CryptoError(f"the answer has {len(theirs)} a=crypto lines; RFC 4568 "
                              "§7.1.2 allows one")
        answer = parse_crypto(theirs[0])
        suite = usable(answer, suites)
        for value in ours:
            mine = parse_crypto(value)
            if mine.tag == answer.tag:
                if mine.suite != answer.suite:
                    raise CryptoError(f"the answer's a=crypto:{answer.tag} is {answer.suite}; "
                                      f"our line {mine.tag} offered {mine.suite}")
                return Keys(suite.name, mine.key, answer.key, answer.tag)
        raise CryptoError(f"the answer's a=crypto tag {answer.tag} is not one we offered")
    if not ours:
        raise CryptoError("our RTP/SAVP answer has no a=crypto line")
    mine = parse_crypto(ours[0])
    for value in theirs:
        try:
            offered = parse_crypto(value)
        except CryptoError:
            continue
        if offered.tag == mine.tag:
            suite = usable(offered, suites)
            return Keys(suite.name, mine.key, offered.key, mine.tag)
    raise CryptoError(f"the offer has no a=crypto:{mine.tag} for our answer")


def with_crypto(md: sdp.MediaDescription, lines: Sequence[Crypto]) -> None:
    """Replace the m-line's ``a=crypto`` attributes with ``lines`` (after the rtpmaps)."""
    kept = [a for a in md.attributes if a[0] != "crypto"]
    md.attributes = kept + [("crypto", c.value()) for c in lines]
