"""Tests for sipload.sip.digest: RFC vectors, parsing, client/server round trips, fuzzing."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipload.sip.digest import (
    ALGORITHMS,
    Challenge,
    ClientNonceCounter,
    Credentials,
    DigestError,
    DigestServer,
    VerifyStatus,
    build_credentials,
    choose_challenge,
    compute_response,
    is_supported_algorithm,
    parse_challenges,
    parse_credentials,
)

# ----------------------------------------------------------------------------- helpers


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


USERS = {"alice": "s3cret", "Mufasa": "Circle of Life"}


def lookup(username: str) -> str | None:
    return USERS.get(username)


def counter_factory(prefix: str = "n") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):06d}"


def make_server(
    *,
    algorithm: str = "MD5",
    qop: tuple[str, ...] = ("auth",),
    opaque: str | None = None,
    max_nonce_age: float = 300.0,
    max_nonces: int = 4096,
) -> DigestServer:
    return DigestServer(
        "sip.example.com",
        algorithm=algorithm,
        qop=qop,
        nonce_factory=counter_factory(),
        opaque=opaque,
        max_nonce_age=max_nonce_age,
        max_nonces=max_nonces,
    )


# ----------------------------------------------------------------------------- RFC vectors

RFC2617_CHALLENGE = (
    'Digest\r\n                 realm="testrealm@host.com",\r\n'
    '                 qop="auth,auth-int",\r\n'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
    ' qop=auth,\r\n nc=00000001,\r\n cnonce="0a4f113b",\r\n'
    ' response="6629fae49393a05397450978507c4ef1",\r\n'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc2617_vector_by_hand() -> None:
    # Independent re-computation of the RFC 2617 §3.5 figure, then the module's.
    ha1 = md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5("GET:/dir/index.html")
    by_hand = md5(f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}")
    assert by_hand == "6629fae49393a05397450978507c4ef1"
    creds = Credentials(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="",
        qop="auth",
        nc=1,
        cnonce="0a4f113b",
    )
    assert compute_response(creds, password="Circle Of Life", method="GET") == by_hand


def test_rfc2617_example_headers() -> None:
    [challenge] = parse_challenges(RFC2617_CHALLENGE)
    assert challenge.realm == "testrealm@host.com"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm is None and challenge.effective_algorithm == "MD5"
    assert challenge.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    creds = build_credentials(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert creds.qop == "auth"
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds == parse_credentials(RFC2617_AUTHORIZATION)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    header = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", '
        f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    [challenge] = parse_challenges(header)
    creds = build_credentials(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
        nc=1,
    )
    assert creds.response == expected
    header_out = creds.to_header()
    assert f"algorithm={algorithm}," in header_out
    assert "qop=auth, nc=00000001" in header_out
    assert f'opaque="{RFC7616_OPAQUE}"' in header_out

    # Independent computation with hashlib.
    def h(text: str) -> str:
        return hashlib.new(algorithm.replace("-", "").lower(), text.encode()).hexdigest()

    ha1 = h("Mufasa:http-auth@example.org:Circle of Life")
    ha2 = h("GET:/dir/index.html")
    assert h(f"{ha1}:{RFC7616_NONCE}:00000001:{RFC7616_CNONCE}:auth:{ha2}") == expected


def test_sha512_256_is_the_fips_truncated_variant() -> None:
    assert is_supported_algorithm("SHA-512-256")
    assert is_supported_algorithm("sha-512-256-SESS")
    # FIPS 180-4 example "abc" for SHA-512/256.
    assert hashlib.new("sha512_256", b"abc").hexdigest() == (
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )


def test_sess_and_auth_int_formulas() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    creds = Credentials(
        username="alice",
        realm="r",
        nonce="N",
        uri="sip:bob@example.com",
        response="",
        algorithm="SHA-256-sess",
        cnonce="C",
        qop="auth-int",
        nc=0x1F,
    )
    h = sha256
    ha1 = h(f"{h(b'alice:r:pw')}:N:C".encode())
    ha2 = h(b"INVITE:sip:bob@example.com:" + h(body).encode())
    expected = h(f"{ha1}:N:0000001f:C:auth-int:{ha2}".encode())
    assert compute_response(creds, password="pw", method="INVITE", body=body) == expected


def test_rfc2069_mode_without_qop() -> None:
    creds = build_credentials(
        Challenge(realm="r", nonce="N"),
        username="u",
        password="p",
        method="REGISTER",
        uri="sip:r",
        cnonce="unused",
    )
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    assert creds.response == md5(f"{md5('u:r:p')}:N:{md5('REGISTER:sip:r')}")
    assert "qop" not in creds.to_header() and "nc=" not in creds.to_header()


# ----------------------------------------------------------------------------- parsing


def test_parse_odd_whitespace_and_quoted_commas() -> None:
    value = (
        ' \tdIgEsT   REALM =\t"a, \\"quoted\\" realm,"  ,,  nonce= "x,y" ,'
        '\r\n   algorithm = sha-256 ,qop="auth ,  AUTH-INT",stale = TRUE, '
        'opaque="" , foo=bar, baz="q\\\\z"'
    )
    [c] = parse_challenges(value)
    assert c.realm == 'a, "quoted" realm,'
    assert c.nonce == "x,y"
    assert c.algorithm == "SHA-256"
    assert c.qop == ("auth", "auth-int")
    assert c.stale is True
    assert c.opaque == ""
    assert c.extra == (("foo", "bar"), ("baz", "q\\z"))


def test_parse_folded_quoted_string() -> None:
    [c] = parse_challenges('Digest realm="one\r\n  two", nonce="n"')
    assert c.realm == "one two"


def test_several_challenges_in_one_value_and_other_schemes() -> None:
    value = (
        'Basic realm="legacy", Digest realm="r", nonce="1", algorithm=MD5, '
        'Negotiate abc+/==, Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth"'
    )
    challenges = parse_challenges(value)
    assert [c.nonce for c in challenges] == ["1", "2"]
    assert parse_challenges("Basic realm=x") == []


def test_choose_challenge_prefers_stronger() -> None:
    md5 = Challenge(realm="r", nonce="1", algorithm="MD5", qop=("auth",))
    sha = Challenge(realm="r", nonce="2", algorithm="SHA-256", qop=("auth",))
    sha_sess = Challenge(realm="r", nonce="3", algorithm="SHA-256-sess", qop=("auth",))
    sha512 = Challenge(realm="r", nonce="4", algorithm="SHA-512-256")
    unknown = Challenge(realm="r", nonce="5", algorithm="SHA-1024")
    bad_qop = Challenge(realm="r", nonce="6", algorithm="SHA-512-256", qop=("auth-conf",))
    assert choose_challenge([md5, sha]) is sha
    assert choose_challenge([sha, md5]) is sha
    assert choose_challenge([sha_sess, sha]) is sha_sess  # -sess ranks with its base
    assert choose_challenge([md5, sha512, sha]) is sha512
    assert choose_challenge([unknown, bad_qop, md5]) is md5
    assert choose_challenge([unknown, bad_qop]) is None
    assert choose_challenge([]) is None
    parsed = parse_challenges('Digest realm="r", nonce="1"') + parse_challenges(
        'Digest realm="r", nonce="2", algorithm=SHA-256'
    )
    chosen = choose_challenge(parsed)
    assert chosen is not None and chosen.nonce == "2"


def test_challenge_to_header_canonical() -> None:
    c = Challenge(
        realm='r "x"',
        nonce="n",
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque="o",
        stale=True,
    )
    assert c.to_header() == (
        'Digest realm="r \\"x\\"", nonce="n", opaque="o", stale=true, '
        'algorithm=SHA-256, qop="auth,auth-int"'
    )
    assert parse_challenges(c.to_header()) == [c]


def test_credentials_to_header_canonical() -> None:
    creds = parse_credentials(RFC2617_AUTHORIZATION)
    assert creds.to_header() == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001'
    )
    assert parse_credentials(creds.to_header()) == creds


def test_to_header_refuses_header_injection() -> None:
    with pytest.raises(DigestError):
        Challenge(realm="r\r\nVia: evil", nonce="n").to_header()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        'Digest realm="r"',  # no nonce
        'Digest nonce="n"',  # no realm
        'Digest realm="r, nonce="n"',  # unterminated quote
        'Digest realm="r" nonce="n"',  # missing comma
        'Digest realm="r", realm="s", nonce="n"',  # duplicate
        'Digest realm="r", nonce=, qop="auth"',  # empty value
        'realm="r", nonce="n"',  # no scheme
        'Digest realm="a\rb", nonce="n"',  # bare CR inside quotes
        'Digest realm="a\r\nb", nonce="n"',  # line break that is not a fold
        "Digest abc==",  # token68 for Digest
        'Digest realm="r", nonce="n", @',
    ],
)
def test_parse_challenges_rejects(value: str) -> None:
    with pytest.raises(DigestError):
        parse_challenges(value)


@pytest.mark.parametrize(
    "value",
    [
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        'Digest username="u", realm="r", nonce="n", uri="/"',  # no response
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", qop=auth',
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", qop=auth, '
        'cnonce="c", nc=0x1',
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", qop=auth, '
        'cnonce="c", nc=123456789',
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", qop=auth, '
        'cnonce="c", nc=00000000',
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", '
        'Digest username="u", realm="r", nonce="n", uri="/", response="x"',
    ],
)
def test_parse_credentials_rejects(value: str) -> None:
    with pytest.raises(DigestError):
        parse_credentials(value)


# ----------------------------------------------------------------------------- client


def test_qop_selection() -> None:
    both = Challenge(realm="r", nonce="n", qop=("auth-int", "auth"))
    only_int = Challenge(realm="r", nonce="n", qop=("auth-int",))
    unknown = Challenge(realm="r", nonce="n", qop=("auth-conf",))

    def build(
        challenge: Challenge, pref: tuple[str, ...] = ("auth", "auth-int"), nc: int = 1
    ) -> Credentials:
        return build_credentials(
            challenge,
            username="u",
            password="p",
            method="M",
            uri="sip:x",
            cnonce="c",
            nc=nc,
            qop_preference=pref,
        )

    assert build(both).qop == "auth"
    assert build(only_int).qop == "auth-int"
    assert build(both, pref=("auth-int", "auth")).qop == "auth-int"
    with pytest.raises(DigestError):
        build(unknown)
    with pytest.raises(DigestError):
        build(only_int, pref=("auth",))
    with pytest.raises(DigestError):
        build(Challenge(realm="r", nonce="n", algorithm="X"))
    with pytest.raises(DigestError):
        build(both, nc=0)


def test_client_nonce_counter() -> None:
    counter = ClientNonceCounter(max_entries=2)
    assert [counter.next_nc("r", "a") for _ in range(3)] == [1, 2, 3]
    assert counter.next_nc("r", "b") == 1
    assert counter.next_nc("other", "a") == 1
    assert len(counter) == 2  # ("r", "a") was the least recently used and got dropped
    assert counter.current("r", "a") == 0
    assert counter.next_nc("r", "b") == 2
    counter.forget("r", "b")
    assert counter.next_nc("r", "b") == 1


# ----------------------------------------------------------------------------- server

QOPS: list[tuple[str, ...]] = [(), ("auth",), ("auth-int",), ("auth", "auth-int")]


@pytest.mark.parametrize("qop", QOPS, ids=lambda q: ",".join(q) or "none")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(algorithm: str, qop: tuple[str, ...]) -> None:
    server = make_server(algorithm=algorithm, qop=qop, opaque="op")
    header = server.challenge(now=100.0).to_header()
    [challenge] = parse_challenges(header)
    assert challenge.algorithm == algorithm
    counter = ClientNonceCounter()
    body = b"v=0\r\ns=-\r\n"
    for i in range(1, 4):
        creds = build_credentials(
            challenge,
            username="alice",
            password="s3cret",
            method="INVITE",
            uri="sip:bob@example.com",
            body=body,
            cnonce=f"cn{i}",
            nc=counter.next_nc(challenge.realm, challenge.nonce),
            qop_preference=("auth-int", "auth"),
        )
        wire = parse_credentials(creds.to_header())
        assert wire == creds
        result = server.verify(
            wire,
            method="INVITE",
            password_lookup=lookup,
            body=body,
            now=101.0,
            request_uri="sip:bob@example.com",
        )
        assert result.ok, result
        assert result.username == "alice"
        if not qop:
            break  # no nc without qop: nothing more to count
    wrong = server.verify(
        build_credentials(
            challenge,
            username="alice",
            password="wrong",
            method="INVITE",
            uri="sip:bob@example.com",
            body=body,
            cnonce="x",
            nc=counter.next_nc(challenge.realm, challenge.nonce),
        ),
        method="INVITE",
        password_lookup=lookup,
        body=body,
        now=101.0,
    )
    assert wrong.status is VerifyStatus.WRONG_PASSWORD


def answer(
    challenge: Challenge, *, password: str = "s3cret", nc: int = 1, **kw: str
) -> Credentials:
    return build_credentials(
        challenge,
        username=kw.get("username", "alice"),
        password=password,
        method="REGISTER",
        uri=kw.get("uri", "sip:example.com"),
        cnonce="abc",
        nc=nc,
    )


def verify(
    server: DigestServer, creds: Credentials, now: float = 1.0, body: bytes = b""
) -> VerifyStatus:
    return server.verify(
        creds, method="REGISTER", password_lookup=lookup, now=now, body=body
    ).status


def test_wrong_password_and_unknown_user() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)
    assert verify(server, answer(challenge, password="nope")) is VerifyStatus.WRONG_PASSWORD
    assert verify(server, answer(challenge, username="mallory")) is VerifyStatus.UNKNOWN_USER
    assert verify(server, answer(challenge)) is VerifyStatus.OK


def test_stale_nonce() -> None:
    server = make_server(max_nonce_age=30.0)
    challenge = server.challenge(now=0.0)
    # Right password, expired nonce: stale (the client may retry without asking the user).
    result = server.verify(answer(challenge), method="REGISTER", password_lookup=lookup, now=31.0)
    assert result.status is VerifyStatus.STALE_NONCE and result.stale
    # Expired nonces are forgotten, so it stays stale.
    assert verify(server, answer(challenge, nc=2), now=1.0) is VerifyStatus.STALE_NONCE
    # A nonce this server never issued, but an otherwise correct answer.
    foreign = Challenge(realm="sip.example.com", nonce="forged", algorithm="MD5", qop=("auth",))
    assert verify(server, answer(foreign)) is VerifyStatus.STALE_NONCE
    # Wrong password on a stale nonce is just a wrong password.
    assert verify(server, answer(foreign, password="x")) is VerifyStatus.WRONG_PASSWORD
    again = server.challenge(stale=True, now=40.0)
    assert again.stale and "stale=true" in again.to_header()
    assert again.nonce != challenge.nonce
    assert verify(server, answer(again), now=41.0) is VerifyStatus.OK


def test_expiry_is_pruned_and_store_is_bounded() -> None:
    server = make_server(max_nonces=3, max_nonce_age=10.0)
    first = server.challenge(now=0.0)
    for t in range(1, 4):
        server.challenge(now=float(t))
    assert server.outstanding_nonces() == 3
    assert verify(server, answer(first), now=4.0) is VerifyStatus.STALE_NONCE  # evicted
    server.challenge(now=100.0)  # everything older than 10 s goes
    assert server.outstanding_nonces() == 1


def test_nc_replay_refused() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)
    assert verify(server, answer(challenge, nc=1)) is VerifyStatus.OK
    assert verify(server, answer(challenge, nc=1)) is VerifyStatus.NC_REPLAY
    assert verify(server, answer(challenge, nc=3)) is VerifyStatus.OK
    assert verify(server, answer(challenge, nc=2)) is VerifyStatus.NC_REPLAY
    assert verify(server, answer(challenge, nc=4)) is VerifyStatus.OK


def test_auth_int_with_body() -> None:
    server = make_server(algorithm="SHA-256", qop=("auth-int",))
    challenge = server.challenge(now=0.0)
    body = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
    creds = build_credentials(
        challenge,
        username="alice",
        password="s3cret",
        method="REGISTER",
        uri="sip:example.com",
        body=body,
        cnonce="c",
    )
    assert creds.qop == "auth-int"
    assert verify(server, creds, body=body + b"tampered") is VerifyStatus.WRONG_PASSWORD
    assert verify(server, creds, body=body) is VerifyStatus.OK


def test_malformed_credentials() -> None:
    server = make_server(opaque="op")
    challenge = server.challenge(now=0.0)
    good = answer(challenge)
    assert verify(server, good) is VerifyStatus.OK
    variants = [
        replace(good, realm="other"),
        replace(good, algorithm="SHA-256"),
        replace(good, algorithm="bogus"),
        replace(good, qop=None, nc=None),
        replace(good, qop="auth-int"),
        replace(good, nc=None),
        replace(good, cnonce=None),
        replace(good, nc=0),
        replace(good, opaque=None),
    ]
    for creds in variants:
        assert verify(server, creds) is VerifyStatus.MALFORMED, creds
    unencodable = server.verify(
        replace(good, username="\ud800"), method="REGISTER", password_lookup=str, now=1.0
    )
    assert unencodable.status is VerifyStatus.MALFORMED
    uri_check = server.verify(
        good, method="REGISTER", password_lookup=lookup, now=1.0, request_uri="sip:else"
    )
    assert uri_check.status is VerifyStatus.MALFORMED


def test_server_configuration_errors() -> None:
    with pytest.raises(DigestError):
        make_server(algorithm="SHA-1")
    with pytest.raises(DigestError):
        make_server(qop=("auth-conf",))
    server = DigestServer("r", nonce_factory=lambda: "same")
    server.challenge(now=0.0)
    with pytest.raises(DigestError):
        server.challenge(now=1.0)


# ----------------------------------------------------------------------------- fuzzing

HEADERISH = st.text(alphabet='Digest realm nonce qop=auth,"\\ \t\r\n=,;abc==/+\x00é', max_size=80)


@given(st.one_of(st.text(), HEADERISH))
def test_fuzz_parse_challenges_only_raises_digest_error(value: str) -> None:
    try:
        challenges = parse_challenges(value)
    except DigestError:
        return
    for challenge in challenges:
        assert parse_challenges(challenge.to_header()) == [challenge]


@given(st.one_of(st.text(), HEADERISH))
def test_fuzz_parse_credentials_only_raises_digest_error(value: str) -> None:
    try:
        creds = parse_credentials(value)
    except DigestError:
        return
    assert parse_credentials(creds.to_header()) == creds


QUOTABLE = st.text(st.characters(blacklist_characters="\r\n\x00"), max_size=20)


@given(realm=QUOTABLE, nonce=QUOTABLE, opaque=st.one_of(st.none(), QUOTABLE), stale=st.booleans())
def test_fuzz_challenge_round_trip(realm: str, nonce: str, opaque: str | None, stale: bool) -> None:
    challenge = Challenge(realm=realm, nonce=nonce, opaque=opaque, stale=stale, qop=("auth",))
    assert parse_challenges(challenge.to_header()) == [challenge]


@given(user=QUOTABLE, password=st.text(max_size=20), uri=QUOTABLE)
def test_fuzz_client_server_agree(user: str, password: str, uri: str) -> None:
    server = DigestServer("r", algorithm="SHA-256", nonce_factory=counter_factory())
    challenge = server.challenge(now=0.0)
    try:
        creds = build_credentials(
            challenge, username=user, password=password, method="INVITE", uri=uri, cnonce="c"
        )
    except DigestError:
        return  # e.g. lone surrogates cannot be hashed as UTF-8
    wire = parse_credentials(creds.to_header())
    result = server.verify(
        wire, method="INVITE", password_lookup=lambda u: password if u == user else None, now=0.0
    )
    assert result.ok
