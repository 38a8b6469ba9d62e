"""``sipload parse``: output, JSON fields and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sipload.cli import main

TORTURE = Path(__file__).parent / "data" / "rfc4475"


def test_valid_file_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(TORTURE / "wsinv.dat")]) == 0
    assert "valid request INVITE" in capsys.readouterr().out


def test_invalid_file_exits_1_and_names_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(TORTURE / "badvers.dat"), str(TORTURE / "esc01.dat")]) == 1
    out = capsys.readouterr().out
    assert "invalid request" in out and "505" in out


def test_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "--json", str(TORTURE / "insuf.dat"), str(TORTURE / "bigcode.dat")]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    # RFC 4475 §3.3.1: no Call-ID, From or To (and no Max-Forwards): not valid, 400
    assert lines[0]["valid"] is False and lines[0]["status_code"] == 400
    assert lines[0]["uas_action"] == "reject"
    assert "To, From, Call-ID, Max-Forwards" in lines[0]["reason"]
    assert lines[0]["kind"] == "request" and lines[0]["method"] == "INVITE"
    assert lines[1]["valid"] is False and lines[1]["kind"] == "response"
    assert lines[1]["uas_action"] == "discard" and lines[1]["status_code"] is None
    for line in lines:
        for key in ("file", "index", "valid", "kind", "method", "status", "call_id", "reason",
                    "status_code", "uas_action"):
            assert key in line


def test_stream_of_several_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = (TORTURE / "esc01.dat").read_bytes()
    f = tmp_path / "stream.sip"
    f.write_bytes(one + one)
    assert main(["parse", "--json", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["index"] for x in lines] == [0, 1]


def test_stdin_and_usage_errors() -> None:
    data = (TORTURE / "wsinv.dat").read_bytes()
    r = subprocess.run([sys.executable, "-m", "sipload", "parse", "-"], input=data,
                       capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "sipload", "parse"], capture_output=True,
                       check=False)
    assert r.returncode == 2
    r = subprocess.run([sys.executable, "-m", "sipload", "parse", "/nonexistent/x"],
                       capture_output=True, check=False)
    assert r.returncode == 2


REQUEST = (b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-lint-1\r\n"
           b"Max-Forwards: 70\r\n"
           b"To: <sip:bob@example.com>\r\n"
           b"From: <sip:alice@example.com>;tag=a1\r\n"
           b"Call-ID: lint-1@192.0.2.1\r\n"
           b"CSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")
RESPONSE = (b"SIP/2.0 200 OK\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-lint-1\r\n"
            b"To: <sip:bob@example.com>;tag=b1\r\n"
            b"From: <sip:alice@example.com>;tag=a1\r\n"
            b"Call-ID: lint-1@192.0.2.1\r\n"
            b"CSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n")


def _without(message: bytes, header: bytes) -> bytes:
    return b"".join(line for line in message.splitlines(keepends=True)
                    if not line.startswith(header + b":"))


def _lint(tmp_path: Path, data: bytes, capsys: pytest.CaptureFixture[str],
          *flags: str) -> tuple[int, list[dict[str, object]]]:
    f = tmp_path / "m.sip"
    f.write_bytes(data)
    code = main(["parse", "--json", *flags, str(f)])
    return code, [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def test_the_well_formed_ones_are_valid(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for data in (REQUEST, RESPONSE):
        code, (info,) = _lint(tmp_path, data, capsys)
        assert code == 0 and info["valid"] is True and info["uas_action"] == "accept"


@pytest.mark.parametrize("header", [b"To", b"From", b"CSeq", b"Call-ID", b"Max-Forwards",
                                    b"Via"])
def test_a_request_missing_a_mandatory_header_is_invalid(
        header: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, (info,) = _lint(tmp_path, _without(REQUEST, header), capsys)
    assert code == 1
    assert info["valid"] is False and info["status_code"] == 400
    assert info["uas_action"] == "reject"
    assert f"missing mandatory header {header.decode()} (RFC 3261 §8.1.1)" in str(
        info["reason"])


@pytest.mark.parametrize("header", [b"To", b"From", b"CSeq", b"Call-ID", b"Via"])
def test_a_response_missing_a_mandatory_header_is_discarded(
        header: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, (info,) = _lint(tmp_path, _without(RESPONSE, header), capsys)
    assert code == 1
    assert info["valid"] is False and info["status_code"] is None
    assert info["uas_action"] == "discard" and header.decode() in str(info["reason"])


def test_text_output_of_an_invalid_request_names_the_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "m.sip"
    f.write_bytes(_without(REQUEST, b"Via"))
    assert main(["parse", str(f)]) == 1
    out = capsys.readouterr().out
    assert "invalid request OPTIONS: missing mandatory header Via" in out
    assert "a UAS answers 400" in out


def test_a_header_section_without_its_empty_line_is_incomplete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = REQUEST[:-2]  # ends with CRLF after the last header, no empty line
    code, (info,) = _lint(tmp_path, cut, capsys)
    assert code == 1 and info["valid"] is False
    assert str(info["reason"]).startswith("incomplete: no empty line")
    code, (info,) = _lint(tmp_path, _without(RESPONSE, b"Content-Length")[:-2], capsys)
    assert code == 1 and info["valid"] is False and info["uas_action"] == "discard"


def test_a_short_body_on_a_stream_is_incomplete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = REQUEST.replace(b"Content-Length: 0", b"Content-Length: 10") + b"v=0\r\n"
    code, (info,) = _lint(tmp_path, short, capsys, "--stream")
    assert code == 1 and info["valid"] is False
    assert "incomplete: Content-Length 10 larger than the 5 body bytes" in str(info["reason"])
    # a stream of a whole message, then the start of another that never ends
    code, infos = _lint(tmp_path, REQUEST + REQUEST + short, capsys)
    assert code == 1
    assert [i["valid"] for i in infos] == [True, True, False]
    assert str(infos[2]["reason"]).startswith("incomplete:")


@pytest.mark.parametrize(("name", "status"), [("bext01", 420), ("unkscm", 416),
                                              ("invut", 415)])
def test_refused_by_policy_stays_valid(name: str, status: int,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """RFC 4475 §3.3: well-formed and complete, refused by a UAS's policy."""
    assert main(["parse", "--json", str(TORTURE / f"{name}.dat")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["valid"] is True and info["status_code"] == status
    assert info["uas_action"] == "reject"


def test_rfc2543_request_without_max_forwards_is_invalid_with_a_note(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "--json", str(TORTURE / "inv2543.dat")]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["valid"] is False and "Max-Forwards" in info["reason"]
    assert "RFC 4475 §3.4.1" in info["reason"]
