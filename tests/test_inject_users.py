"""USER-order CSV injection behaves like SIPp's ``-users`` file: one row per user.

The closed model's users each keep their row for every call they place; a run
whose users outnumber the rows, or that has no users at all, is refused before
anything is sent.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest

from sipload.cli import main
from sipload.cluster.messages import Welcome
from sipload.cluster.worker import engine_config
from sipload.engine import Engine, EngineConfig
from sipload.scenario.loader import load_file
from sipload.sip.build import make_response
from sipload.sip.message import Request
from sipload.sip.parser import parse_message

UAC = ("inject: rows.csv\nsteps:\n  - send: OPTIONS\n"
       "    headers: {X-User: '${field0}'}\n  - recv: 200\n")


def _files(tmp_path: Path, rows: str = "alice\nbob\ncarol\n") -> Path:
    (tmp_path / "rows.csv").write_text("USER\n" + rows)
    scen = tmp_path / "uac.yaml"
    scen.write_text(UAC)
    return scen


@pytest.mark.parametrize(("flags", "says"), [
    ([], "--users: "),
    (["--users", "4"], "--users: 4 users, but"),
])
def test_user_order_needs_a_row_per_user(tmp_path: Path, flags: list[str], says: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    scen = _files(tmp_path)
    out = tmp_path / "run"
    code = main(["run", str(scen), "--calls", "3", "--target", "127.0.0.1:9", "--out",
                 str(out), *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and "rows.csv" in err and "USER" in err
    assert not out.exists()  # nothing sent, no run directory


def test_each_worker_numbers_its_users_after_the_previous_ones() -> None:
    cfg = engine_config({"workers": 3}, Welcome(2, {}, 1.0, 10, 20, users=4))
    assert (cfg.users, cfg.first_user) == (4, 8)


class _Answer(asyncio.DatagramProtocol):
    """A peer that answers every OPTIONS 200 and notes its X-User."""

    def __init__(self) -> None:
        self.users: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        req = parse_message(data)
        assert isinstance(req, Request) and self.transport is not None
        self.users.append(str(req.get("x-user")))
        self.transport.sendto(make_response(req, 200).to_bytes(), addr)


def test_closed_model_users_keep_their_rows(tmp_path: Path) -> None:
    prog = load_file(_files(tmp_path, "alice\nbob\ncarol\ndave\n"))

    async def go() -> tuple[list[str], list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(
            _Answer, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        records: list[dict[str, Any]] = []
        # worker 1 of a run of 2 users per worker: users 2 and 3 (rows carol, dave)
        engine = Engine(EngineConfig(program=prog, target=("127.0.0.1", port), calls=8,
                                     rate=200.0, users=2, first_user=2, seed=1),
                        on_records=records.extend)
        try:
            await asyncio.wait_for(engine.run(), 30)
        finally:
            transport.close()
        return peer.users, records

    users, records = asyncio.run(go())
    assert len(records) == 8 and all(r["result"] == "success" for r in records)
    counts = collections.Counter(users)
    assert set(counts) == {"carol", "dave"}, counts
    assert sum(counts.values()) == 8
