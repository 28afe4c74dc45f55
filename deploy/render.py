"""Render a kustomization offline, for the subset of kustomize that deploy/ uses.

    python3 deploy/render.py deploy/overlays/native-sidecar > pod.yaml

`kubectl kustomize` (or `kustomize build`) renders these directories the same way; this file
exists because neither is installed where the tests run. What it understands, and nothing else
(anything more is an error, so a kustomization cannot silently render differently):

- `resources`: YAML files (one or more documents) and directories holding a kustomization;
- `configMapGenerator`, `secretGenerator`: `name`, `files` (`path` or `key=path`), `literals`,
  with `generatorOptions.disableNameSuffixHash: true` (no hash suffixes, so no name rewriting);
- `patches`: a file of JSON 6902 operations (`add`, `remove`, `replace`, `move`, `copy`) with a
  `target` of `kind` and `name`;
- `images`: `name` with `newName` and/or `newTag`, for containers and init containers.
"""

from __future__ import annotations

import base64
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
KNOWN = {
    "apiVersion", "kind", "resources", "configMapGenerator", "secretGenerator",
    "generatorOptions", "patches", "images",
}  # fmt: skip


class RenderError(Exception):
    """The kustomization uses something outside the subset, or is wrong."""


def render(directory: Path) -> list[Resource]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise RenderError(f"{directory}: unsupported kustomization keys {sorted(unknown)}")
    resources = [*generated(directory, kustomization)]
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources.extend(render(path))
        else:
            resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for patch in kustomization.get("patches", []):
        apply_patch(directory, patch, resources)
    for image in kustomization.get("images", []):
        set_image(image, resources)
    return resources


def generated(directory: Path, kustomization: dict[str, Any]) -> list[Resource]:
    generators = [
        *(("ConfigMap", g) for g in kustomization.get("configMapGenerator", [])),
        *(("Secret", g) for g in kustomization.get("secretGenerator", [])),
    ]
    if generators and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise RenderError(f"{directory}: generators need disableNameSuffixHash: true")
    return [generate(directory, kind, spec) for kind, spec in generators]


def generate(directory: Path, kind: str, spec: dict[str, Any]) -> Resource:
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, path = entry.rpartition("=")
        data[key or Path(path).name] = (directory / path).read_text()
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    resource: Resource = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "Secret":
        resource["type"] = spec.get("type", "Opaque")
        data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    resource["data"] = data
    return resource


def apply_patch(directory: Path, patch: dict[str, Any], resources: list[Resource]) -> None:
    target = patch["target"]
    matches = [
        r
        for r in resources
        if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]
    ]
    if len(matches) != 1:
        raise RenderError(f"patch {patch['path']}: {len(matches)} resources match {target}")
    for operation in yaml.safe_load((directory / patch["path"]).read_text()):
        apply_operation(matches[0], operation)


def apply_operation(document: Resource, operation: dict[str, Any]) -> None:
    op = operation["op"]
    if op in ("move", "copy"):
        value = copy.deepcopy(pointer_get(document, operation["from"]))
        if op == "move":
            pointer_remove(document, operation["from"])
        pointer_add(document, operation["path"], value)
    elif op == "add":
        pointer_add(document, operation["path"], copy.deepcopy(operation["value"]))
    elif op == "remove":
        pointer_remove(document, operation["path"])
    elif op == "replace":
        pointer_remove(document, operation["path"])
        pointer_add(document, operation["path"], copy.deepcopy(operation["value"]))
    else:
        raise RenderError(f"unsupported patch operation {op!r}")


def split(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def parent_of(document: Any, pointer: str) -> tuple[Any, str]:
    *parents, last = split(pointer)
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, last


def pointer_get(document: Any, pointer: str) -> Any:
    node, last = parent_of(document, pointer)
    return node[int(last)] if isinstance(node, list) else node[last]


def pointer_add(document: Any, pointer: str, value: Any) -> None:
    node, last = parent_of(document, pointer)
    if isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), value)
    else:
        node[last] = value


def pointer_remove(document: Any, pointer: str) -> None:
    node, last = parent_of(document, pointer)
    del node[int(last) if isinstance(node, list) else last]


def set_image(image: dict[str, str], resources: list[Resource]) -> None:
    for resource in resources:
        pod = resource.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                tag = image.get("newTag", container["image"].partition(":")[2])
                container["image"] = f"{image.get('newName', name)}:{tag}"


def dump(resources: list[Resource]) -> str:
    return yaml.safe_dump_all(resources, sort_keys=False)


if __name__ == "__main__":
    print(dump(render(Path(sys.argv[1]))), end="")
