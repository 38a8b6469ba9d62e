"""The deployment files: Kubernetes manifests, the compose files and the Containerfile.

No cluster and no container runtime here: the Kubernetes objects are read with the
official client's models (every object deserializes, required fields present, and
serializing it back gives the file's own text: a misspelt field would be dropped), and
the names that must agree across objects are checked (Service and pod labels and
ports, the Secret's keys and what each pod mounts, the PVC, the worker count).  Every
sipload command line in the files is parsed by sipload's own argument parser.  The
image itself is built and run by ci/container-smoke.sh.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client  # the official client: a test extra

from sipload.cli import build_parser
from sipload.cluster.channel import Keys, make_keys

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "deploy" / "compose.yaml"
COMPOSE_HOST = REPO / "deploy" / "compose.host.yaml"

MODELS = {("v1", "Service"): client.V1Service, ("v1", "Secret"): client.V1Secret,
          ("v1", "PersistentVolumeClaim"): client.V1PersistentVolumeClaim,
          ("v1", "Pod"): client.V1Pod, ("batch/v1", "Job"): client.V1Job}


# --------------------------------------------------------------------------- helpers


def _kustomization(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return data


def _deep_merge(base: Any, patch: Any) -> Any:
    """A strategic-merge patch of maps (all the overlay uses)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _deep_merge(base[k], v) if k in base else v
        return out
    return patch


def _secret(kust: dict[str, Any], keys: Path) -> dict[str, Any]:
    """The Secret kustomize's secretGenerator makes, from keys sipload keys made."""
    import base64

    (gen,) = kust["secretGenerator"]
    data = {}
    for f in gen["files"]:
        name = Path(f).name
        data[name] = base64.b64encode((keys / name).read_bytes()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": gen["name"]},
            "type": "Opaque", "data": data}


def _objects(folder: Path, keys: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k folder`` creates (with kustomize's labels)."""
    kust = _kustomization(folder)
    out: list[dict[str, Any]] = []
    for res in kust["resources"]:
        out.extend(d for d in yaml.safe_load_all((folder / res).read_text()) if d)
    out.append(_secret(kust, keys))
    for entry in kust.get("labels", []):
        for obj in out:
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
    return out


def _model(doc: dict[str, Any]) -> Any:
    cls = MODELS[(doc["apiVersion"], doc["kind"])]
    obj = cls.from_dict(doc)  # required fields are checked here (pydantic)
    back = client.ApiClient().sanitize_for_serialization(obj)
    assert back == doc, f"{doc['kind']} {doc['metadata']['name']}: fields the model " \
        f"does not know, or of the wrong type:\n{_diff(doc, back)}"
    return obj


def _diff(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        lines = [_diff(a.get(k), b.get(k), f"{path}.{k}") for k in sorted(set(a) | set(b))]
        return "\n".join(x for x in lines if x)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return "\n".join(x for x in (_diff(x, y, f"{path}[{i}]")
                                     for i, (x, y) in enumerate(zip(a, b, strict=True))) if x)
    return "" if a == b else f"{path}: {a!r} != {b!r}"


def _find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name}"
    return found[0]


def _option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _mounted(pod: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mounted at ``path`` in ``container``."""
    (mount,) = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return dict(vol)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    make_keys(folder)
    return folder


@pytest.fixture(scope="module")
def objects(keys: Path) -> list[dict[str, Any]]:
    return _objects(K8S, keys)


# --------------------------------------------------------------------------- Kubernetes


def test_every_object_deserializes_into_the_clients_models(objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [("Job", "sipload-coordinator"), ("Job", "sipload-workers"),
                     ("PersistentVolumeClaim", "sipload-runs"), ("Secret", "sipload-keys"),
                     ("Service", "sipload-coordinator")]
    reader = yaml.safe_load((K8S / "report-reader.yaml").read_text())
    for doc in [*objects, reader]:
        _model(doc)


def test_the_service_reaches_the_coordinator_and_the_workers_reach_the_service(
        objects: list[dict[str, Any]]) -> None:
    svc = _find(objects, "Service", "sipload-coordinator")
    job = _find(objects, "Job", "sipload-coordinator")
    pod = job["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    (port,) = svc["spec"]["ports"]
    (cport,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    bind = urlparse(_option(container["args"], "--bind"))
    assert bind.port == cport["containerPort"]
    workers = _find(objects, "Job", "sipload-workers")
    (wc,) = workers["spec"]["template"]["spec"]["containers"]
    connect = urlparse(_option(wc["args"], "--connect"))
    assert (connect.hostname, connect.port) == (svc["metadata"]["name"], port["port"])
    # the workers' pods are not the Service's
    assert not svc["spec"]["selector"].items() <= workers["spec"]["template"]["metadata"][
        "labels"].items()
    # a coordinator restarted would be another run; workers that end are not restarted
    assert job["spec"]["backoffLimit"] == 0 and pod["spec"]["restartPolicy"] == "Never"
    assert workers["spec"]["completionMode"] == "Indexed"


def test_the_coordinator_waits_for_as_many_workers_as_the_job_runs(
        objects: list[dict[str, Any]]) -> None:
    (coord,) = _find(objects, "Job", "sipload-coordinator")["spec"]["template"]["spec"][
        "containers"]
    workers = _find(objects, "Job", "sipload-workers")["spec"]
    n = int(_option(coord["args"], "--workers"))
    assert n == workers["parallelism"] == workers["completions"]
    assert _option(coord["args"], "--local-workers") == "0"


def test_each_pod_mounts_the_keys_it_needs_and_no_more(objects: list[dict[str, Any]],
                                                         keys: Path) -> None:
    secret = _find(objects, "Secret", "sipload-keys")
    for name, needs, never in (
            ("sipload-coordinator", lambda k: [k.server_secret, k.server_public,
                                               k.authorized / "worker.key"], ["worker.key_secret"]),
            ("sipload-workers", lambda k: [k.worker_secret, k.server_public],
             ["server.key_secret"])):
        pod = _find(objects, "Job", name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        folder = Path(_option(container["args"], "--keys"))
        vol = _mounted(pod, container, str(folder))
        assert vol["secret"]["secretName"] == secret["metadata"]["name"]
        items = {i["path"]: i["key"] for i in vol["secret"]["items"]}
        assert set(items.values()) <= set(secret["data"]), "items name keys the Secret has"
        wanted = {p.relative_to(folder).as_posix() for p in needs(Keys(folder))}
        assert wanted <= set(items), (name, wanted, items)
        assert not set(never) & set(items.values()), f"{name} gets a secret it must not have"
        # readable by the pod's user only through its group (fsGroup), never by others
        assert vol["secret"]["defaultMode"] & 0o007 == 0
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_the_run_directory_is_on_the_claim_the_reader_mounts(
        objects: list[dict[str, Any]]) -> None:
    pvc = _find(objects, "PersistentVolumeClaim", "sipload-runs")
    pod = _find(objects, "Job", "sipload-coordinator")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    vol = _mounted(pod, container, container["workingDir"])
    assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert "--out" not in container["args"]  # each run its own reports/<time>-<name>/
    reader = yaml.safe_load((K8S / "report-reader.yaml").read_text())
    (rc,) = reader["spec"]["containers"]
    rvol = _mounted(reader["spec"], rc, container["workingDir"])
    assert rvol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_every_container_runs_unprivileged_with_requests(objects: list[dict[str, Any]]) -> None:
    reader = yaml.safe_load((K8S / "report-reader.yaml").read_text())
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Job"]
    for pod in [*pods, reader["spec"]]:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            assert "cpu" not in c["resources"].get("limits", {}), "CPU throttling skews timing"


def test_sipload_parses_every_command_line(objects: list[dict[str, Any]]) -> None:
    parser = build_parser()
    commands = {}
    for o in objects:
        if o["kind"] == "Job":
            (c,) = o["spec"]["template"]["spec"]["containers"]
            args = parser.parse_args(c["args"])
            commands[args.command] = args
    assert sorted(commands) == ["run", "worker"]
    run = commands["run"]
    assert Path(run.scenario).is_absolute() and run.scenario.startswith("/home/sipload/")
    assert (REPO / "scenarios" / Path(run.scenario).name).exists(), "a scenario in the image"


def test_the_host_network_overlay_patches_the_workers(keys: Path) -> None:
    overlay = K8S / "host-network"
    kust = _kustomization(overlay)
    assert [(overlay / r).resolve() for r in kust["resources"]] == [K8S.resolve()]
    base = _objects(K8S, keys)
    (patch,) = kust["patches"]
    doc = yaml.safe_load((overlay / patch["path"]).read_text())
    target = _find(base, doc["kind"], doc["metadata"]["name"])
    merged = _deep_merge(target, doc)
    _model(merged)
    spec = merged["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["containers"] == target["spec"]["template"]["spec"]["containers"]


def test_a_misspelt_field_is_caught() -> None:
    """The check above can fail: a field the models do not know is reported."""
    job = yaml.safe_load((K8S / "workers.yaml").read_text())
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(AssertionError, match="volumeMount"):
        _model(bad)
    bad = copy.deepcopy(job)
    del bad["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(Exception, match="name"):
        _model(bad)


# --------------------------------------------------------------------------- compose


def _interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default} with the defaults ($$ is a literal $)."""
    if isinstance(value, str):
        text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value.replace("$$", "\0"))
        assert "${" not in text, f"a variable without a default: {value}"
        return text.replace("\0", "$")
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def _compose(*files: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for f in files:
        doc = _deep_merge(doc, yaml.safe_load(f.read_text()))
    out: dict[str, Any] = _interpolate(doc)
    return out


def test_compose_services_line_up() -> None:
    doc = _compose(COMPOSE)
    services = doc["services"]
    assert sorted(services) == ["coordinator", "keys", "sipp", "uas", "worker"]
    parser = build_parser()
    parsed = {name: parser.parse_args(s["command"]) for name, s in services.items()
              if "command" in s and s.get("image", "").endswith("sipload:latest")}
    assert sorted(parsed) == ["coordinator", "keys", "uas", "worker"]
    declared = set(doc["volumes"])
    for name, s in services.items():
        for v in s.get("volumes", []):
            assert v.split(":")[0] in declared, (name, v)
        for dep in s.get("depends_on", {}):
            assert dep in services
    # the keys are made once, into the volume the others mount read-only
    keys = parsed["keys"]
    assert keys.if_missing and services["keys"]["volumes"] == [f"keys:{keys.folder}"]
    for name in ("coordinator", "worker"):
        assert f"keys:{parsed[name].keys}:ro" in services[name]["volumes"]
        assert services[name]["depends_on"]["keys"]["condition"] == \
            "service_completed_successfully"
    run, worker = parsed["coordinator"], parsed["worker"]
    connect, bind = urlparse(worker.connect), urlparse(run.bind)
    assert (connect.hostname, connect.port) == ("coordinator", bind.port)
    assert int(run.workers) == int(services["worker"]["deploy"]["replicas"])
    assert run.local_workers == 0 and run.out is None
    assert f"runs:{services['coordinator']['working_dir']}" in services["coordinator"]["volumes"]
    # the default target is the uas service, listening on its own name
    host, port = run.target.split(":")
    assert parsed[host].listen == f"{host}:{port}"
    assert Path(run.scenario).parent == Path("/home/sipload/scenarios")
    sipp = shlex.split(services["sipp"]["entrypoint"][2])
    assert sipp[:4] == ["exec", "sipp", "-sn", "uas"] and sipp[sipp.index("-p") + 1] == port


def test_compose_host_networking_override() -> None:
    doc = _compose(COMPOSE, COMPOSE_HOST)
    services = doc["services"]
    for name in ("coordinator", "worker"):
        assert services[name]["network_mode"] == "host"
    worker = build_parser().parse_args(services["worker"]["command"])
    run = build_parser().parse_args(services["coordinator"]["command"])
    assert worker.keys == run.keys
    assert urlparse(worker.connect).port == urlparse(run.bind).port
    assert urlparse(worker.connect).hostname == "127.0.0.1"


# --------------------------------------------------------------------------- image


def test_containerfile_essentials() -> None:
    text = (REPO / "Containerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"docker\.io/library/python:3\.1[1-9][.\w-]*-slim[\w-]*",
                                 base.group(1))
    final = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert '\nENTRYPOINT ["sipload"]\n' in final
    assert "SIPLOAD_COMPILE=require" in text
    assert "gcc" not in final, "no compiler in the final image"
    copied = re.findall(r"^COPY (?:--\S+ )*(\S+)", text, re.M)
    assert not [c for c in copied if "key" in c], "no keys are copied into the image"
