"""The pod of deploy/overlays/podman under `podman kube play`: 202, callback, credentials, drain."""

from __future__ import annotations

import base64
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .client import call, ready
from .conftest import ROOT, logs, podman, poll

POD = "atkproxy-pod-0"  # podman names a Deployment's pod <name>-pod-<replica>
PROXY, RECEIVER = f"{POD}-atkproxy", f"{POD}-receiver"
VOLUMES = ("atkproxy-config", "atkproxy-secrets", "atkproxy-store", "atkproxy-tmp")
CALLBACK_USER = "e2e:" + base64.b16encode(os.urandom(6)).decode()


def rendering() -> list[dict[str, Any]]:
    path = ROOT / "deploy" / "render.py"
    spec = importlib.util.spec_from_file_location("deploy_render", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    resources: list[dict[str, Any]] = module.render(ROOT / "deploy" / "overlays" / "podman")
    return resources


def secret() -> dict[str, Any]:
    """The Secret of the base, with values made now. podman 4.3 writes a Secret's `data` to
    the files as it is, without decoding: so each value is already what the file must hold
    (a Fernet key in the standard base64 alphabet is valid base64 and a valid key)."""
    files = {
        "store-key": base64.b64encode(os.urandom(32)).decode(),
        "callback-basic": base64.b64encode(CALLBACK_USER.encode()).decode(),
    }
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "atkproxy-secrets"},
            "type": "Opaque", "data": files}  # fmt: skip


def tear_down(pod_file: Path) -> None:
    podman("kube", "down", str(pod_file), check=False)
    podman("secret", "rm", "atkproxy-secrets", check=False)
    podman("volume", "rm", "--force", *VOLUMES, check=False)


@pytest.fixture
def pod(image: str, tmp_path: Path) -> Iterator[str]:
    """The pod played from the rendering; yields its IP address."""
    pod_file, secret_file = tmp_path / "pod.yaml", tmp_path / "secret.yaml"
    pod_file.write_text(yaml.safe_dump_all(rendering(), sort_keys=False))
    secret_file.write_text(yaml.safe_dump(secret()))
    tear_down(pod_file)  # what a failed earlier run may have left
    try:
        podman("kube", "play", str(secret_file))  # before the pod, so its volume finds it
        podman("kube", "play", str(pod_file))
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", POD)
        yield podman(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", infra
        )
    finally:
        tear_down(pod_file)


def test_async_request_callback_with_credentials_and_a_clean_drain(pod: str) -> None:
    proxy, receiver = f"http://{pod}:8080", f"http://{pod}:9000"
    poll(lambda: ready(f"{proxy}/_atk/ready"), "the proxy in the pod to be ready", 60)
    # podman starts the containers together and runs no startup probes: wait for all three
    poll(lambda: ready(f"http://{pod}:8081/registrations"), "the backend in the pod")
    poll(lambda: ready(f"{receiver}/_received"), "the receiver in the pod")  # one attempt only
    headers = {"X-ATK-Mode": "async", "X-ATK-Callback": "http://127.0.0.1:9000/callbacks"}
    seed = {"name": "john", "lastName": "doe"}
    status, answer_headers, body = call("POST", f"{proxy}/registrations", seed, headers)
    assert status == 202
    assert body == {**seed, "id": body["id"]}

    [callback] = poll(lambda: call("GET", f"{receiver}/_received")[2], "the callback")
    assert callback["path"] == "/callbacks"
    assert callback["headers"]["X-ATK-Status"] == "Completed"
    assert callback["headers"]["X-ATK-Job"] == answer_headers["X-ATK-Job"]
    basic = base64.b64encode(CALLBACK_USER.encode()).decode()
    assert callback["headers"]["Authorization"] == f"Basic {basic}"  # from the Secret's file

    podman("pod", "stop", "--time", "30", POD)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", PROXY) == "0"
    lines = logs(PROXY)  # every line JSON
    events = [line["event"] for line in lines]
    assert events[0] == "starting" and events[-1] == "stopped"
    [drained] = [line for line in lines if line["event"] == "engine stopped"]
    assert drained["jobs_left_in_store"] == 0
    assert CALLBACK_USER not in str(lines)
