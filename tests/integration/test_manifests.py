"""Every deploy manifest, checked offline: the Kubernetes overlays render (``kubectl kustomize``) and validate
against the Kubernetes schemas (``kubernetes-validate``, strict: unknown fields fail), cells own their
accounts explicitly, and the compose files hold together."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.settings import Settings, load_settings
from handlers.app import ROUTES
from handlers.streaming import DRAIN_GRACE
from sidecar.pool import instance_ids

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("bundled", "per-route")
K8S_VERSION = "1.30.0"
HASH_KEY_TERMS = (
    "$http_x_session_affinity",
    "$http_x_claude_code_session_id",
    "$http_session_id",
    "$http_authorization",
)
SIDECAR_DRAIN = 30.0  # the sidecar server's drain timeout

Doc = dict[str, Any]


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl (for `kubectl kustomize`) is not installed")
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    return found


def render(overlay: str) -> list[Doc]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(request.param)


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def env_of(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_every_document_validates_against_the_kubernetes_schemas(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Ingress", "PodDisruptionBudget", "Secret", "Service", "Service", "StatefulSet"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    """The check above can fail: a misspelt field is an error, not a silent pass."""
    docs = render("bundled")
    sts = json.loads(json.dumps(one(docs, "StatefulSet")))
    sts["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def test_cells_are_a_statefulset_with_their_own_volumes(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    sts = one(docs, "StatefulSet")
    headless = [s for s in docs if s["kind"] == "Service" and s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [sts["spec"]["serviceName"]]
    claims = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
    assert claims == ["data"]
    pod = pod_spec(docs)
    assert {v["name"]: v for v in pod["volumes"]}["socket"]["emptyDir"] is not None
    data_users = [c["name"] for c in pod["containers"] if any(m["name"] == "data" for m in c["volumeMounts"])]
    assert len(data_users) == 1, "exactly one container (the sidecar's) holds the data volume"


def test_pods_are_locked_down_and_sized(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    pod = pod_spec(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert container["resources"]["requests"] and container["resources"]["limits"], container["name"]
    for container in pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        home = env_of(container)["HOME"]
        for path in ("/tmp", home):
            assert "emptyDir" in volumes[mounts[path]], f"{container['name']}: {path} is no writable emptyDir"
    # Graceful termination outlasts the drain: open streams, then the sidecar's own drain.
    assert pod["terminationGracePeriodSeconds"] > DRAIN_GRACE + SIDECAR_DRAIN


def test_routes_have_http_probes_and_the_sidecar_an_exec_probe(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    pod = pod_spec(docs)
    for container in pod["containers"]:
        args = container["args"]
        if args[0] == "sidecar":
            for probe in ("startupProbe", "livenessProbe"):
                assert container[probe]["exec"]["command"][:2] == ["lingma-gateway", "ping"]
            continue
        assert args[0] in ("serve", "handler")
        if args[0] == "handler":
            assert set(args[1].split(",")) <= set(ROUTES)
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    commands = sorted(c["args"][0] for c in pod["containers"])
    assert commands == (["serve"] if overlay == "bundled" else ["handler", "handler", "handler", "sidecar"])


def test_pdb_covers_the_cells(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    pdb = one(docs, "PodDisruptionBudget")
    labels = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_ingress_keeps_a_conversation_on_its_cell(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    notes = one(docs, "Ingress")["metadata"]["annotations"]
    key = notes["nginx.ingress.kubernetes.io/upstream-hash-by"]
    positions = [key.index(term) for term in HASH_KEY_TERMS]
    assert positions == sorted(positions) and positions[0] == 0, key
    assert "$http_x_session_affinity" in key and "configuration-snippet" not in " ".join(notes)
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "16m"
    assert Settings().gateway_max_body_bytes == 16 * 1024 * 1024
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    turn_timeout = max(
        float(env_of(c).get("LINGMA_RPC_TIMEOUT") or Settings().lingma_rpc_timeout)
        for c in pod_spec(docs)["containers"]
        if c["args"][0] in ("serve", "sidecar")
    )
    assert float(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= turn_timeout


def _accounts(docs: list[Doc]) -> str:
    secret = one(docs, "Secret")
    return base64.b64decode(secret["data"]["LINGMA_ACCOUNTS"]).decode()


def test_each_cell_serves_its_own_accounts(rendered: tuple[str, list[Doc]]) -> None:
    """Every cell of the StatefulSet has accounts, each account exactly one cell, ids unique across cells."""
    _, docs = rendered
    sts = one(docs, "StatefulSet")
    cells = [f"{sts['metadata']['name']}-{n}" for n in range(sts["spec"]["replicas"])]
    raw = _accounts(docs)
    accounts = json.loads(raw)
    assert sorted({a["cell"] for a in accounts}) == cells
    pool_containers = [c for c in pod_spec(docs)["containers"] if c["args"][0] in ("serve", "sidecar")]
    assert len(pool_containers) == 1
    env = env_of(pool_containers[0])
    assert env["GATEWAY_CELL"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "LINGMA_SESSION_BUNDLE" not in env
    secret_name = one(docs, "Secret")["metadata"]["name"]
    assert {"secretRef": {"name": secret_name}} in pool_containers[0]["envFrom"]
    ids: list[str] = []
    for cell in cells:
        settings = load_settings({"LINGMA_ACCOUNTS": raw, "GATEWAY_CELL": cell})
        ids += instance_ids(settings)
    assert len(ids) == len(set(ids)) == len(accounts)


def _compose(name: str) -> Doc:
    doc: Doc = yaml.safe_load((ROOT / "infra" / name).read_text())
    return doc


@pytest.mark.parametrize("name", ["compose.bundled.yaml", "compose.split.yaml"])
def test_compose_files_hold_together(name: str) -> None:
    doc = _compose(name)
    assert set(doc) <= {"services", "volumes", "networks", "secrets", "configs"} | {
        k for k in doc if k.startswith("x-")
    }
    declared = set(doc.get("volumes") or {})
    services = doc["services"]
    for svc_name, svc in services.items():
        build = svc["build"]
        assert (ROOT / "infra" / build["context"] / build["dockerfile"]).is_file(), svc_name
        command = svc["command"]
        assert command[0] in ("serve", "sidecar", "handler"), svc_name
        if command[0] == "handler":
            assert set(command[1].split(",")) <= set(ROUTES), svc_name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in declared, f"{svc_name} mounts undeclared volume {source}"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{svc_name} depends on unknown service {dep}"
        for port in svc.get("ports", []):
            host, container = str(port).split(":")
            assert int(host) > 0 and container == "8787", svc_name
    if name == "compose.split.yaml":
        routes_served = {
            r for s in services.values() if s["command"][0] == "handler" for r in s["command"][1].split(",")
        }
        assert {"openai_chat", "openai_responses", "anthropic_messages"} <= routes_served
