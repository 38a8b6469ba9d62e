"""Register-then-call against a program no one here wrote: ``sipload run`` registers
``bob`` at Kamailio's digest registrar (binding the address of a ``sipload uas``),
then calls ``bob`` through Kamailio, which looks the binding up, record-routes and
forwards the INVITE; ACK and BYE follow the route set through Kamailio."""

from __future__ import annotations

from pathlib import Path

from tests.bgproc import Background
from tests.bgproc import sipload as sipload_cmd
from tests.peers import REGISTRAR_REALM, REGISTRAR_USERS, free_port, kamailio_registrar
from tests.test_run_gate import sipload, summary

SCENARIO = """name: register-then-call-kamailio
role: uac
credentials: {{username: bob, password: {password}, realm: {realm}}}
to: "sip:bob@${{remote_host}}:${{remote_port}}"
steps:
  - send: REGISTER
    leg: reg
    from: "sip:bob@${{remote_host}}"
    expires: 300
    headers: {{Contact: "<sip:bob@127.0.0.1:{callee}>"}}
    start_timer: register
  - recv: 200
    leg: reg
    stop_timer: register
    check:
      - {{name: binding, header: Contact, matches: "127.0.0.1:{callee}"}}
  - send: INVITE
    body: {{sdp: offer}}
  - recv: 100
    optional: true
  - recv: 180
    optional: true
  - recv: 200
  - send: ACK
  - pause: 50ms
  - send: BYE
  - recv: 200
"""


def test_register_then_call_through_kamailio(tmp_path: Path) -> None:
    callee = free_port("udp")
    with Background(sipload_cmd("uas", "--listen", f"127.0.0.1:{callee}", "--duration",
                                "90s"), ready="listening"), kamailio_registrar() as registrar:
        scenario = tmp_path / "reg_call.yaml"
        scenario.write_text(SCENARIO.format(password=REGISTRAR_USERS["bob"],
                                            realm=REGISTRAR_REALM, callee=callee))
        out = tmp_path / "run"
        r = sipload("run", scenario, "--target", f"127.0.0.1:{registrar.port}",
                    "--calls", 3, "--rate", 10, "--workers", 1, "--out", out, "--quiet")
        assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    assert s["calls"]["succeeded"] == 3 and s["exit_code"] == 0
    # registered (the binding checked in the 200's Contact), then the INVITE went
    # through Kamailio's location lookup to the callee, and the BYE was answered
    assert s["responses"]["received"]["REGISTER"]["200"] == 3
    assert s["responses"]["received"]["INVITE"]["200"] == 3
    assert s["responses"]["received"]["BYE"] == {"200": 3}
    assert s["latency"]["register"]["count"] == 3
