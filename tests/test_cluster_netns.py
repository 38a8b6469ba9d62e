"""Remote workers over CurveZMQ, each "host" in its own network namespace.

A private LAN (:class:`tests.netns.Lan`: one namespace per host on a bridge, in
a /24 that exists only inside them) holds the coordinator, two workers, the
target (``sipload uas``) and a host for workers without the right key.  The
coordinator binds its control socket on its LAN address with ``--keys`` and
starts no local worker; the workers connect from their namespaces with
``sipload worker --connect``.  Checked: the run completes with every call
answered by the target across the LAN; a worker from another key folder and a
worker whose key is not authorized are both refused (they never join, say so
and exit 3, and the coordinator logs ``worker_refused``); ``--bind`` beyond
loopback without ``--keys`` is a usage error.  Every namespace is deleted at
the end, also on failure.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
from pathlib import Path

import zmq.auth

from sipload.stats.rundir import EVENTS, read_calls, read_jsonl
from tests.bgproc import Background, run, sipload
from tests.netns import Lan, require_netns

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"
CALLS = 200


def _keys(folder: Path) -> Path:
    done = run(sipload("keys", folder), timeout=30)
    assert done.returncode == 0, done.stderr
    return folder


def test_remote_workers_over_curve_in_namespaces(tmp_path: Path) -> None:
    require_netns()
    keys = _keys(tmp_path / "keys")
    other = _keys(tmp_path / "other")  # another key folder: another server key too
    stranger = _keys(tmp_path / "stranger")  # the right server key, an unknown worker key
    shutil.copy(keys / "server.key", stranger / "server.key")
    stranger_public, _ = zmq.auth.load_certificate(str(stranger / "worker.key"))

    lan = Lan(["coord", "w1", "w2", "uas", "rogue"])
    with lan:
        coord, uas_host = lan["coord"], lan["uas"]
        url = f"tcp://{coord.address}:5555"
        target = f"{uas_host.address}:5060"
        out = tmp_path / "run"
        procs: list[Background] = []
        try:
            uas = Background(uas_host.argv(sipload("uas", "--listen", target)),
                             ready="listening", ready_timeout=20).start()
            procs.append(uas)
            coordinator = Background(coord.argv(sipload(
                "run", BASIC, "--target", target, "--rate", 100, "--calls", CALLS,
                "--workers", 2, "--local-workers", 0, "--bind", url, "--keys", keys,
                "--out", out, "--quiet"))).start()
            procs.append(coordinator)
            rogue = lan["rogue"]
            refused = [Background(rogue.argv(sipload("worker", "--connect", url, "--keys", k)))
                       for k in (other, stranger)]
            for r in refused:  # they try first: refused before the real workers join
                procs.append(r.start())
            for r in refused:
                assert r.wait(20) == 3, r.output
            workers = [Background(lan[h].argv(sipload("worker", "--connect", url,
                                                      "--keys", keys))).start()
                       for h in ("w1", "w2")]
            procs.extend(workers)
            assert coordinator.wait(60) == 0, coordinator.output
            for w in workers:
                assert w.wait(15) == 0, w.output
        finally:
            for p in reversed(procs):
                p.stop()
        # the refused workers say why, and never got a welcome
        assert "refused" in refused[0].output and "handshake failed" in refused[0].output
        assert "refused this worker's CurveZMQ key" in refused[1].output

        summary = json.loads((out / "summary.json").read_text())
        calls = summary["calls"]
        assert calls["attempted"] == calls["succeeded"] == CALLS, (calls, coordinator.output)
        table = read_calls(out)
        assert sorted(table.column("call_number").to_pylist()) == list(range(CALLS))
        assert collections.Counter(table.column("worker").to_pylist()) == {0: 100, 1: 100}

        events = read_jsonl(out, EVENTS)
        joined = [e for e in events if e["event"] == "worker_joined"]
        pids = {w.proc.pid for w in workers if w.proc is not None}
        assert {e["pid"] for e in joined} == pids, "only the two keyed workers joined"
        refusals = [e for e in events if e["event"] == "worker_refused"]
        by_zap = [e for e in refusals if e["host"] == rogue.address]
        assert by_zap and by_zap[0]["key"] == stranger_public.decode(), refusals
        assert any("handshake failed" in e["reason"] for e in refusals), refusals
        assert [e["url"] for e in events if e["event"] == "coordinator_listening"] == [url]
        assert json.loads((out / "plan.json").read_text())["local_host"] == ""
    assert lan.exists() == [], "namespaces left behind"


def test_bind_beyond_loopback_needs_keys(tmp_path: Path) -> None:
    require_netns()
    with Lan(["coord"]) as lan:
        coord = lan["coord"]
        done = subprocess.run(coord.argv(sipload(
            "run", BASIC, "--calls", 1, "--bind", f"tcp://{coord.address}:5555",
            "--out", tmp_path / "run")), capture_output=True, text=True, timeout=60,
            cwd=REPO, check=False)
    assert done.returncode == 2, done.stderr
    assert "--bind beyond loopback needs --keys" in done.stderr
    assert not (tmp_path / "run").exists()
