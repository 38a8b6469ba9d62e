"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

This module owns everything Digest-specific, working on header *values* (strings):

* parsing ``WWW-Authenticate`` / ``Proxy-Authenticate`` values into :class:`Challenge`
  objects and ``Authorization`` / ``Proxy-Authorization`` values into :class:`Credentials`;
* canonical serialisation of both back to header values;
* client side: choosing the strongest challenge, computing the response, tracking the
  nonce count (:class:`ClientNonceCounter`);
* server side: issuing challenges and verifying credentials (:class:`DigestServer`).

It is sans-IO: no clocks, sockets or randomness.  Nonces, cnonces and the current time
are always supplied by the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum


class DigestError(ValueError):
    """Malformed Digest header value, or parameters that cannot be used."""


# --------------------------------------------------------------------------- algorithms


@dataclass(frozen=True)
class _Algorithm:
    name: str  # canonical spelling, e.g. "SHA-256-sess"
    hash_name: str | None  # hashlib name, None when this Python cannot compute it
    sess: bool
    rank: int  # higher is stronger


def _probe_hash(candidates: Sequence[str]) -> str | None:
    for candidate in candidates:
        try:
            hashlib.new(candidate, b"")
        except ValueError:
            continue
        return candidate
    return None


def _build_algorithms() -> dict[str, _Algorithm]:
    bases: list[tuple[str, tuple[str, ...], int]] = [
        ("MD5", ("md5", "MD5"), 1),
        ("SHA-256", ("sha256", "SHA256"), 2),
        ("SHA-512-256", ("sha512_256", "sha512-256", "SHA512-256", "SHA512_256"), 3),
    ]
    table: dict[str, _Algorithm] = {}
    for base, candidates, rank in bases:
        hash_name = _probe_hash(candidates)
        for sess in (False, True):
            name = base + "-sess" if sess else base
            table[name.upper()] = _Algorithm(name, hash_name, sess, rank)
    return table


_ALGORITHMS: dict[str, _Algorithm] = _build_algorithms()

#: Canonical names of every algorithm this module knows (whether or not hashlib has it).
ALGORITHMS: tuple[str, ...] = tuple(a.name for a in _ALGORITHMS.values())

_SUPPORTED_QOP: tuple[str, ...] = ("auth", "auth-int")


def _lookup_algorithm(name: str | None) -> _Algorithm | None:
    """Algorithm by case-insensitive name; an absent algorithm means MD5."""
    return _ALGORITHMS.get("MD5" if name is None else name.upper())


def _canonical_algorithm(name: str) -> str:
    algo = _lookup_algorithm(name)
    return name if algo is None else algo.name


def is_supported_algorithm(name: str | None) -> bool:
    """True when ``name`` (None meaning the default MD5) can be computed here."""
    algo = _lookup_algorithm(name)
    return algo is not None and algo.hash_name is not None


def _require_algorithm(name: str | None) -> _Algorithm:
    algo = _lookup_algorithm(name)
    if algo is None or algo.hash_name is None:
        raise DigestError(f"unsupported digest algorithm {name!r}")
    return algo


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DigestError(f"value is not encodable as UTF-8: {exc}") from None


def _hex(algo: _Algorithm, data: bytes) -> str:
    assert algo.hash_name is not None
    return hashlib.new(algo.hash_name, data).hexdigest()


def compute_response(
    credentials: Credentials, *, password: str, method: str, body: bytes = b""
) -> str:
    """The ``response`` value ``credentials`` must carry (RFC 7616 §3.4.1).

    Uses every field except ``response`` itself; without ``qop`` it is the RFC 2069 form.
    ``body`` only matters for qop=auth-int.
    """
    c = credentials
    algo = _require_algorithm(c.algorithm)
    ha1 = _hex(algo, _utf8(f"{c.username}:{c.realm}:{password}"))
    if algo.sess:
        if c.cnonce is None:
            raise DigestError(f"{algo.name} needs a cnonce")
        ha1 = _hex(algo, _utf8(f"{ha1}:{c.nonce}:{c.cnonce}"))
    if c.qop == "auth-int":
        ha2 = _hex(algo, _utf8(f"{method}:{c.uri}:") + _hex(algo, body).encode("ascii"))
    elif c.qop is None or c.qop == "auth":
        ha2 = _hex(algo, _utf8(f"{method}:{c.uri}"))
    else:
        raise DigestError(f"unsupported qop {c.qop!r}")
    if c.qop is None:
        return _hex(algo, _utf8(f"{ha1}:{c.nonce}:{ha2}"))
    if c.cnonce is None or c.nc is None:
        raise DigestError("qop requires cnonce and nc")
    tail = f"{_format_nc(c.nc)}:{c.cnonce}:{c.qop}:{ha2}"
    return _hex(algo, _utf8(f"{ha1}:{c.nonce}:{tail}"))


def _format_nc(nc: int) -> str:
    if not 1 <= nc <= 0xFFFFFFFF:
        raise DigestError(f"nonce count {nc} out of range")
    return f"{nc:08x}"


# --------------------------------------------------------------------------- lexing

_TOKEN_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# qdtext / quoted-pair / folded line; CR, LF and NUL appear in no other way.
_QUOTED_RE = re.compile(r'"((?:[^"\\\r\n\x00]|\\[^\r\n\x00]|\r?\n[ \t])*)"')
_UNQUOTE_RE = re.compile(r"\\(.)|\r?\n[ \t]+", re.DOTALL)
_TOKEN68_RE = re.compile(r"(?>[-._~+/0-9A-Za-z]+=*)(?=[ \t\r\n]*(?:,|\Z))")
_NC_RE = re.compile(r"[0-9a-fA-F]{1,8}")
_LWS = " \t\r\n"


@dataclass
class _RawAuth:
    """One scheme with its auth-params, as found in a header value."""

    scheme: str
    params: list[tuple[str, str]]
    token68: str | None = None


def _skip_lws(value: str, pos: int) -> int:
    while pos < len(value) and value[pos] in _LWS:
        pos += 1
    return pos


def _syntax_error(value: str, pos: int, what: str) -> DigestError:
    shown = value if len(value) <= 120 else value[:120] + "..."
    return DigestError(f"{what} at offset {pos} in {shown!r}")


def _unquote(match: re.Match[str]) -> str:
    return _UNQUOTE_RE.sub(lambda m: m.group(1) or " ", match.group(1))


def _parse_auth_list(value: str) -> list[_RawAuth]:
    """Parse ``1#( scheme [ 1*SP ( token68 / #auth-param ) ] )`` (RFC 7235 §4.1)."""
    found: list[_RawAuth] = []
    pos = 0
    need_comma = just_scheme = False
    while (pos := _skip_lws(value, pos)) < len(value):
        if value[pos] == ",":
            pos += 1
            need_comma = just_scheme = False
            continue
        if need_comma:
            raise _syntax_error(value, pos, "expected ','")
        t68 = _TOKEN68_RE.match(value, pos) if just_scheme else None
        just_scheme = False
        if t68 is not None:
            found[-1].token68 = t68.group()
            pos, need_comma = t68.end(), True
            continue
        name = _TOKEN_RE.match(value, pos)
        if name is None:
            raise _syntax_error(value, pos, f"unexpected {value[pos]!r}")
        pos = _skip_lws(value, name.end())
        if pos == len(value) or value[pos] != "=":
            found.append(_RawAuth(name.group(), []))
            just_scheme = True
            continue
        if not found or found[-1].token68 is not None:
            raise _syntax_error(value, pos, "auth-param without a scheme")
        pos = _skip_lws(value, pos + 1)
        quoted = _QUOTED_RE.match(value, pos)
        token = None if quoted else _TOKEN_RE.match(value, pos)
        if quoted is not None:
            param_value, pos = _unquote(quoted), quoted.end()
        elif token is not None:
            param_value, pos = token.group(), token.end()
        else:
            raise _syntax_error(value, pos, f"bad value for {name.group()!r}")
        found[-1].params.append((name.group().lower(), param_value))
        need_comma = True
    if not found:
        raise _syntax_error(value, 0, "no authentication scheme")
    return found


def _digest_params(raw: _RawAuth) -> dict[str, str]:
    if raw.token68 is not None:
        raise DigestError("Digest does not take a token68 value")
    params: dict[str, str] = {}
    for name, value in raw.params:
        if name in params:
            raise DigestError(f"duplicate Digest parameter {name!r}")
        params[name] = value
    return params


def _required(params: dict[str, str], name: str) -> str:
    value = params.pop(name, None)
    if value is None:
        raise DigestError(f"Digest parameter {name!r} is missing")
    return value


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _parse_nc(text: str) -> int:
    if _NC_RE.fullmatch(text) is None or int(text, 16) == 0:
        raise DigestError(f"invalid nonce count {text[:20]!r}")
    return int(text, 16)


# --------------------------------------------------------------------------- serialising


def _quote(value: str) -> str:
    if any(c in "\r\n\x00" for c in value):
        raise DigestError(f"cannot place {value!r} in a header")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_token(value: str) -> bool:
    return _TOKEN_RE.fullmatch(value) is not None


def _token_or_quoted(value: str) -> str:
    return value if _is_token(value) else _quote(value)


def _render(items: list[tuple[str, str | None, bool]], extra: Iterable[tuple[str, str]]) -> str:
    """``Digest name=value, ...``; each item is (name, value or None to omit, quoted)."""
    parts = [
        f"{name}={_quote(value) if quoted else _token_or_quoted(value)}"
        for name, value, quoted in items
        if value is not None
    ]
    parts.extend(f"{name}={_quote(value)}" for name, value in extra)
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge (``WWW-Authenticate`` / ``Proxy-Authenticate``)."""

    realm: str
    nonce: str
    algorithm: str | None = None  # None: not sent, which means MD5
    qop: tuple[str, ...] = ()  # empty: RFC 2069 compatibility mode
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    charset: str | None = None
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # unknown auth-params, names lower-cased

    @property
    def effective_algorithm(self) -> str:
        return "MD5" if self.algorithm is None else self.algorithm

    def to_header(self) -> str:
        return _render(
            [
                ("realm", self.realm, True),
                ("domain", self.domain, True),
                ("nonce", self.nonce, True),
                ("opaque", self.opaque, True),
                ("stale", "true" if self.stale else None, False),
                ("algorithm", self.algorithm, False),
                ("qop", ",".join(self.qop) or None, True),
                ("charset", self.charset, False),
                ("userhash", "true" if self.userhash else None, False),
            ],
            self.extra,
        )


@dataclass(frozen=True)
class Credentials:
    """Digest credentials (``Authorization`` / ``Proxy-Authorization``)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None  # None: not sent, which means MD5
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def effective_algorithm(self) -> str:
        return "MD5" if self.algorithm is None else self.algorithm

    def to_header(self) -> str:
        return _render(
            [
                ("username", self.username, True),
                ("realm", self.realm, True),
                ("nonce", self.nonce, True),
                ("uri", self.uri, True),
                ("response", self.response, True),
                ("algorithm", self.algorithm, False),
                ("cnonce", self.cnonce, True),
                ("opaque", self.opaque, True),
                ("qop", self.qop, False),
                ("nc", None if self.nc is None else _format_nc(self.nc), False),
                ("userhash", "true" if self.userhash else None, False),
            ],
            self.extra,
        )


def parse_challenges(value: str) -> list[Challenge]:
    """Digest challenges in one header value; other schemes are skipped.

    Raises :class:`DigestError` on malformed input (and only that).
    """
    challenges: list[Challenge] = []
    for raw in _parse_auth_list(value):
        if raw.scheme.lower() != "digest":
            continue
        params = _digest_params(raw)
        realm = _required(params, "realm")
        nonce = _required(params, "nonce")
        algorithm = params.pop("algorithm", None)
        qop = params.pop("qop", None)
        challenges.append(
            Challenge(
                realm=realm,
                nonce=nonce,
                algorithm=None if algorithm is None else _canonical_algorithm(algorithm),
                qop=() if qop is None else _split_qop(qop),
                opaque=params.pop("opaque", None),
                stale=_flag(params.pop("stale", None)),
                domain=params.pop("domain", None),
                charset=params.pop("charset", None),
                userhash=_flag(params.pop("userhash", None)),
                extra=tuple(params.items()),
            )
        )
    return challenges


def _split_qop(value: str) -> tuple[str, ...]:
    return tuple(part.strip(" \t").lower() for part in value.split(",") if part.strip(" \t"))


def parse_credentials(value: str) -> Credentials:
    """Parse one Digest ``Authorization`` / ``Proxy-Authorization`` value.

    Raises :class:`DigestError` on malformed input (and only that).
    """
    raws = _parse_auth_list(value)
    if len(raws) != 1:
        raise DigestError("expected exactly one set of credentials")
    raw = raws[0]
    if raw.scheme.lower() != "digest":
        raise DigestError(f"not Digest credentials: scheme {raw.scheme!r}")
    params = _digest_params(raw)
    username, realm, nonce, uri, response = (
        _required(params, name) for name in ("username", "realm", "nonce", "uri", "response")
    )
    algorithm = params.pop("algorithm", None)
    qop = params.pop("qop", None)
    nc_text = params.pop("nc", None)
    cnonce = params.pop("cnonce", None)
    if qop is not None and (nc_text is None or cnonce is None):
        raise DigestError("qop given without both nc and cnonce")
    return Credentials(
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm=None if algorithm is None else _canonical_algorithm(algorithm),
        cnonce=cnonce,
        opaque=params.pop("opaque", None),
        qop=None if qop is None else qop.lower(),
        nc=None if nc_text is None else _parse_nc(nc_text),
        userhash=_flag(params.pop("userhash", None)),
        extra=tuple(params.items()),
    )


# --------------------------------------------------------------------------- client


def _usable(challenge: Challenge) -> bool:
    if not is_supported_algorithm(challenge.algorithm):
        return False
    return not challenge.qop or any(q in _SUPPORTED_QOP for q in challenge.qop)


def choose_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The strongest usable challenge (SHA-512-256 > SHA-256 > MD5), or None.

    ``-sess`` variants rank with their base algorithm; ties keep the server's order.
    """
    best: Challenge | None = None
    best_rank = 0
    for challenge in challenges:
        if not _usable(challenge):
            continue
        rank = _require_algorithm(challenge.algorithm).rank
        if rank > best_rank:
            best, best_rank = challenge, rank
    return best


def answerable_challenge(values: Iterable[str]) -> Challenge | None:
    """The challenge to answer among the values of WWW- or Proxy-Authenticate headers.

    Values that do not parse are skipped; of the rest, :func:`choose_challenge`
    picks the strongest usable one (None: nothing to answer).
    """
    challenges: list[Challenge] = []
    for value in values:
        try:
            challenges.extend(parse_challenges(value))
        except DigestError:
            continue
    try:
        return choose_challenge(challenges)
    except DigestError:
        return None


def build_credentials(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    body: bytes = b"",
    nc: int = 1,
    qop_preference: Sequence[str] = ("auth", "auth-int"),
) -> Credentials:
    """Answer ``challenge`` for a request ``method`` to ``uri``.

    The first entry of ``qop_preference`` that the challenge offers is used, so by
    default "auth" wins and "auth-int" is used only when it is the only one offered.
    ``cnonce`` is sent only when needed (a qop was chosen, or a ``-sess`` algorithm).
    """
    algo = _require_algorithm(challenge.algorithm)
    qop: str | None = None
    if challenge.qop:
        for wanted in qop_preference:
            if wanted in _SUPPORTED_QOP and wanted in challenge.qop:
                qop = wanted
                break
        else:
            raise DigestError(f"no acceptable qop among {challenge.qop!r}")
    unsigned = Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response="",
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop is not None or algo.sess else None,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc if qop is not None else None,
    )
    response = compute_response(unsigned, password=password, method=method, body=body)
    return replace(unsigned, response=response)


class ClientNonceCounter:
    """Nonce counts per (realm, nonce): the first use of a nonce is 1, then 2, ..."""

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._counts: dict[tuple[str, str], int] = {}

    def next_nc(self, realm: str, nonce: str) -> int:
        key = (realm, nonce)
        nc = self._counts.pop(key, 0) + 1
        if nc > 0xFFFFFFFF:
            raise DigestError("nonce count exhausted; a fresh nonce is needed")
        self._counts[key] = nc  # re-inserted: most recently used goes last
        while len(self._counts) > self._max_entries:
            del self._counts[next(iter(self._counts))]
        return nc

    def current(self, realm: str, nonce: str) -> int:
        """The last nc handed out for this nonce (0 if none)."""
        return self._counts.get((realm, nonce), 0)

    def forget(self, realm: str, nonce: str) -> None:
        self._counts.pop((realm, nonce), None)

    def __len__(self) -> int:
        return len(self._counts)


# --------------------------------------------------------------------------- server


class VerifyStatus(Enum):
    OK = "ok"
    WRONG_PASSWORD = "wrong-password"
    UNKNOWN_USER = "unknown-user"
    STALE_NONCE = "stale-nonce"
    NC_REPLAY = "nc-replay"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    reason: str = ""
    username: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is VerifyStatus.OK

    @property
    def stale(self) -> bool:
        """True when the client should be re-challenged with ``stale=true``."""
        return self.status is VerifyStatus.STALE_NONCE


@dataclass
class _IssuedNonce:
    issued_at: float
    last_nc: int = 0


class DigestServer:
    """Issues Digest challenges for one realm and verifies the answers.

    Issued nonces are remembered (at most ``max_nonces``, oldest dropped first) for
    ``max_nonce_age`` seconds of the caller-supplied clock ``now``.
    """

    def __init__(
        self,
        realm: str,
        *,
        algorithm: str = "MD5",
        qop: Sequence[str] = ("auth",),
        nonce_factory: Callable[[], str],
        opaque: str | None = None,
        max_nonce_age: float = 300.0,
        max_nonces: int = 4096,
    ) -> None:
        self.realm = realm
        self.algorithm = _require_algorithm(algorithm).name
        for q in qop:
            if q not in _SUPPORTED_QOP:
                raise DigestError(f"unsupported qop {q!r}")
        self.qop: tuple[str, ...] = tuple(qop)
        self.opaque = opaque
        self.max_nonce_age = max_nonce_age
        if max_nonces < 1:
            raise ValueError("max_nonces must be positive")
        self.max_nonces = max_nonces
        self._nonce_factory = nonce_factory
        self._nonces: dict[str, _IssuedNonce] = {}

    def challenge(self, stale: bool = False, *, now: float) -> Challenge:
        """A fresh challenge; its nonce is recorded as issued at ``now``."""
        self._expire(now)
        nonce = self._nonce_factory()
        if nonce in self._nonces:
            raise DigestError("nonce_factory returned a nonce that is still in use")
        self._nonces[nonce] = _IssuedNonce(now)
        while len(self._nonces) > self.max_nonces:
            del self._nonces[next(iter(self._nonces))]
        return Challenge(
            realm=self.realm,
            nonce=nonce,
            algorithm=self.algorithm,
            qop=self.qop,
            opaque=self.opaque,
            stale=stale,
        )

    def outstanding_nonces(self) -> int:
        return len(self._nonces)

    def _expire(self, now: float) -> None:
        # Insertion order is issue order, so expired nonces sit at the front.
        while self._nonces:
            oldest = next(iter(self._nonces))
            if now - self._nonces[oldest].issued_at <= self.max_nonce_age:
                break
            del self._nonces[oldest]

    def _check_shape(self, creds: Credentials, request_uri: str | None) -> str | None:
        """Why ``creds`` cannot be for this server, or None when the shape is fine."""
        if creds.realm != self.realm:
            return f"realm {creds.realm!r} is not {self.realm!r}"
        algo = _lookup_algorithm(creds.algorithm)
        if algo is None or algo.name != self.algorithm:
            return f"algorithm {creds.effective_algorithm!r} was not offered"
        if self.qop:
            if creds.qop not in self.qop:
                return f"qop {creds.qop!r} was not offered"
        elif creds.qop is not None:
            return "qop sent but none was offered"
        if creds.qop is not None and (creds.nc is None or creds.cnonce is None):
            return "qop requires nc and cnonce"
        if creds.nc is not None and not 1 <= creds.nc <= 0xFFFFFFFF:
            return f"nonce count {creds.nc} out of range"
        if algo.sess and creds.cnonce is None:
            return f"{algo.name} requires a cnonce"
        if creds.opaque != self.opaque:
            return "opaque does not match"
        if request_uri is not None and creds.uri != request_uri:
            return f"uri {creds.uri!r} does not match request URI {request_uri!r}"
        return None

    def verify(
        self,
        credentials: Credentials,
        *,
        method: str,
        password_lookup: Callable[[str], str | None],
        now: float,
        body: bytes = b"",
        request_uri: str | None = None,
    ) -> VerifyResult:
        """Check ``credentials`` for a request ``method`` (with ``body`` for auth-int).

        A correct answer to an unknown or expired nonce gives ``STALE_NONCE`` (the caller
        re-challenges with ``challenge(stale=True, now=...)``); an nc not above the last
        accepted one for that nonce gives ``NC_REPLAY``.
        """
        user = credentials.username
        problem = self._check_shape(credentials, request_uri)
        if problem is not None:
            return VerifyResult(VerifyStatus.MALFORMED, problem, user)
        password = password_lookup(user)
        if password is None:
            return VerifyResult(VerifyStatus.UNKNOWN_USER, f"no such user {user!r}", user)
        try:
            expected = compute_response(credentials, password=password, method=method, body=body)
        except DigestError as exc:
            return VerifyResult(VerifyStatus.MALFORMED, str(exc), user)
        given = credentials.response.lower().encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode("ascii"), given):
            return VerifyResult(VerifyStatus.WRONG_PASSWORD, "response mismatch", user)
        issued = self._nonces.get(credentials.nonce)
        if issued is None:
            return VerifyResult(VerifyStatus.STALE_NONCE, "nonce not issued here", user)
        if now - issued.issued_at > self.max_nonce_age:
            del self._nonces[credentials.nonce]
            return VerifyResult(VerifyStatus.STALE_NONCE, "nonce expired", user)
        if credentials.nc is not None:
            if credentials.nc <= issued.last_nc:
                reason = f"nc {credentials.nc} not above {issued.last_nc}"
                return VerifyResult(VerifyStatus.NC_REPLAY, reason, user)
            issued.last_nc = credentials.nc
        return VerifyResult(VerifyStatus.OK, "", user)
