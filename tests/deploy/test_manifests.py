"""deploy/: every kustomization renders (deploy/render.py) and validates strictly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from atkproxy.settings import Settings
from atkproxy.sources import build, gather

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
# native sidecars (restartPolicy on an init container) need 1.29; the newest schema the
# validator ships checks that nothing used is gone
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_render", DEPLOY / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_renderer()


def rendered(name: str) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = render.render(DEPLOY / name)
    return resources


def of_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [r for r in resources if r["kind"] == kind]
    return found


def pod_spec(resources: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = of_kind(resources, "Deployment")["spec"]["template"]["spec"]
    return spec


def by_name(containers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in containers}


def test_there_is_a_base_and_its_overlays() -> None:
    names = [str(p.relative_to(DEPLOY)) for p in KUSTOMIZATIONS]
    assert names == [
        "base", "overlays/native-sidecar", "overlays/podman", "overlays/pvc", "overlays/redis",
    ]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_rendering_validates_strictly(directory: Path, version: str) -> None:
    resources = render.render(directory)
    assert resources
    for resource in yaml.safe_load_all(render.dump(resources)):  # what kubectl would get
        kubernetes_validate.validate(resource, version, strict=True)


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment = of_kind(rendered("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnly"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_the_config_map_is_the_automatiko_preset() -> None:
    config_map = of_kind(rendered("base"), "ConfigMap")
    assert config_map["data"]["config.yaml"] == (ROOT / "config" / "automatiko.yaml").read_text()


def test_the_service_reaches_the_proxy_port_only() -> None:
    resources = rendered("base")
    [port] = of_kind(resources, "Service")["spec"]["ports"]
    proxy = by_name(pod_spec(resources)["containers"])["atkproxy"]
    assert [p["name"] for p in proxy["ports"]] == [port["targetPort"]]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_container_is_locked_down(directory: Path) -> None:
    spec = pod_spec(render.render(directory))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*spec["containers"], *spec.get("initContainers", [])]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_proxy_has_probes_resources_and_a_grace_period_above_its_stop() -> None:
    spec = pod_spec(rendered("base"))
    proxy = by_name(spec["containers"])["atkproxy"]
    paths = {kind: proxy[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe")}
    assert paths == {"startupProbe": "/_atk/health", "livenessProbe": "/_atk/health"}
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/_atk/ready"
    assert {"requests", "limits"} <= proxy["resources"].keys()
    defaults = Settings()
    stop = defaults.listen.shutdown_delay + defaults.async_.drain_timeout + 1
    assert spec["terminationGracePeriodSeconds"] > stop
    # readiness must see the 503 before the listener closes
    assert proxy["readinessProbe"]["periodSeconds"] < defaults.listen.shutdown_delay


def test_secrets_are_files_from_a_secret_volume() -> None:
    spec = pod_spec(rendered("base"))
    proxy = by_name(spec["containers"])["atkproxy"]
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "atkproxy-secrets"
    files = [e["value"] for e in proxy["env"] if e["name"].endswith("_FILE")]
    assert files and all(f.startswith(mounts["secrets"] + "/") for f in files)
    assert mounts["config"] == "/etc/atkproxy"
    assert mounts["atkproxy-store"] == "/var/lib/atkproxy"


def test_native_sidecar_starts_the_backend_first_and_stops_it_last() -> None:
    spec = pod_spec(rendered("overlays/native-sidecar"))
    assert list(by_name(spec["containers"])) == ["atkproxy"]
    [backend] = spec["initContainers"]
    assert (backend["name"], backend["restartPolicy"]) == ("backend", "Always")
    assert "startupProbe" in backend  # the proxy starts once the backend answers


def test_pvc_overlay_puts_the_store_on_a_claim() -> None:
    resources = rendered("overlays/pvc")
    claim = of_kind(resources, "PersistentVolumeClaim")["metadata"]["name"]
    volumes = {v["name"]: v for v in pod_spec(resources)["volumes"]}
    assert volumes["atkproxy-store"] == {
        "name": "atkproxy-store",
        "persistentVolumeClaim": {"claimName": claim},
    }


def test_podman_overlay_uses_the_local_image_and_an_explicit_optional() -> None:
    spec = pod_spec(rendered("overlays/podman"))
    images = {c["image"] for c in spec["containers"]}
    assert images == {"localhost/atkproxy:e2e"}
    assert {v["name"]: v for v in spec["volumes"]}["secrets"]["secret"]["optional"] is False


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_redis_overlay_runs_three_replicas_on_the_redis_of_its_stateful_set() -> None:
    resources = rendered("overlays/redis")
    deployment = of_kind(resources, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"  # no single writer now
    spec = pod_spec(resources)
    env = env_of(by_name(spec["containers"])["atkproxy"])
    service = of_kind(resources, "StatefulSet")["spec"]["serviceName"]
    assert env["ATKPROXY_STORE__URL"] == f"redis://{service}:6379/0"
    mounts = {m["mountPath"] for m in by_name(spec["containers"])["atkproxy"]["volumeMounts"]}
    assert env["ATKPROXY_STORE__PASSWORD_FILE"].startswith("/run/secrets/atkproxy/")
    assert "/run/secrets/atkproxy" in mounts and "/var/lib/atkproxy" not in mounts
    assert "atkproxy-store" not in {v["name"] for v in spec["volumes"]}


def test_redis_overlay_keeps_the_aof_fsynced_on_a_claim_behind_the_shared_password() -> None:
    resources = rendered("overlays/redis")
    stateful = of_kind(resources, "StatefulSet")["spec"]
    [redis] = stateful["template"]["spec"]["containers"]
    config_maps = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ConfigMap"}
    conf = dict(
        line.split(" ", 1)
        for line in config_maps["atkproxy-redis-config"]["data"]["redis.conf"].splitlines()
        if line and not line.startswith("#")
    )
    assert (conf["appendonly"], conf["appendfsync"]) == ("yes", "always")
    assert conf["maxmemory-policy"] == "noeviction"
    [claim] = stateful["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in redis["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == conf["dir"]
    [password] = redis["env"]
    assert password["valueFrom"]["secretKeyRef"] == {
        "name": "atkproxy-secrets", "key": "redis-password",
    }  # fmt: skip
    assert redis["args"][-2:] == ["--requirepass", f"$({password['name']})"]
    context = redis["securityContext"]
    assert (context["readOnlyRootFilesystem"], context["capabilities"]) == (True, {"drop": ["ALL"]})


def test_redis_overlay_settings_override_the_config_maps_store() -> None:
    spec = pod_spec(rendered("overlays/redis"))
    env = env_of(by_name(spec["containers"])["atkproxy"])
    # the secret files are not here: the settings the rest of the environment makes
    environ = {k: v for k, v in env.items() if not k.endswith("_FILE") and "AUTH" not in k}
    settings = build(gather(DEPLOY / "base" / "config.yaml", environ, []))
    assert (settings.store.url, settings.store.lease) == (env["ATKPROXY_STORE__URL"], 30.0)


OPERATIONS = [
    ({"op": "add", "path": "/a/-", "value": 3}, {"a": [1, 2, 3], "b": {"c": 1}}),
    ({"op": "add", "path": "/a/0", "value": 0}, {"a": [0, 1, 2], "b": {"c": 1}}),
    ({"op": "add", "path": "/b/d", "value": 2}, {"a": [1, 2], "b": {"c": 1, "d": 2}}),
    ({"op": "remove", "path": "/a/1"}, {"a": [1], "b": {"c": 1}}),
    ({"op": "replace", "path": "/b/c", "value": 5}, {"a": [1, 2], "b": {"c": 5}}),
    ({"op": "move", "from": "/b/c", "path": "/a/-"}, {"a": [1, 2, 1], "b": {}}),
    ({"op": "copy", "from": "/a", "path": "/b/a"}, {"a": [1, 2], "b": {"c": 1, "a": [1, 2]}}),
]


@pytest.mark.parametrize(("operation", "expected"), OPERATIONS, ids=lambda o: str(o)[:30])
def test_json_patch_operations(operation: dict[str, Any], expected: dict[str, Any]) -> None:
    document = {"a": [1, 2], "b": {"c": 1}}
    render.apply_operation(document, operation)
    assert document == expected


def test_the_renderer_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(render.RenderError, match="namePrefix"):
        render.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("configMapGenerator: [{name: c}]\n")
    with pytest.raises(render.RenderError, match="disableNameSuffixHash"):
        render.render(tmp_path)
