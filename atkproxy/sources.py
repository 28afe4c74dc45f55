"""Configuration sources, layered lowest to highest: YAML file, environment, `-D key=value`.

Each source becomes a flat layer of dotted keys (`async.max_body`) so that layers merge
key by key and every effective value can say where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .settings import Settings

ENV_PREFIX = "ATKPROXY_"
DEFAULT_CONFIG_PATHS = (Path("/etc/atkproxy/config.yaml"), Path("config/atkproxy.yaml"))


class ConfigError(Exception):
    """An invalid configuration; the message names the key and the problem."""


@dataclass
class Layered:
    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def add(self, layer: Mapping[str, Any], origin: str) -> None:
        for key, value in layer.items():
            # a deeper key replaces a whole section set lower, and the other way round
            nested = [k for k in self.values if k.startswith(key + ".") or key.startswith(k + ".")]
            for old in nested:
                del self.values[old]
                del self.origin[old]
            self.values[key] = value
            self.origin[key] = origin

    def nested(self) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for key, value in self.values.items():
            *parents, leaf = key.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return tree


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def yaml_layer(path: Path) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return flatten(tree)


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """`ATKPROXY_ASYNC__MAX_BODY=2MiB` -> `async.max_body`."""
    return {
        name[len(ENV_PREFIX) :].lower().replace("__", "."): value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX)
    }


def define_layer(defines: Sequence[str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for item in defines:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-D {item!r}: expected key=value")
        layer[key.strip()] = value
    return layer


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--config {explicit}: no such file")
        return explicit
    return next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)


def gather(
    config: Path | None, environ: Mapping[str, str], defines: Sequence[str]
) -> Layered:
    layered = Layered()
    path = find_config(config)
    if path is not None:
        layered.add(yaml_layer(path), f"file {path}")
    layered.add(env_layer(environ), "env")
    layered.add(define_layer(defines), "-D")
    return layered


def build(layered: Layered) -> Settings:
    try:
        return Settings.model_validate(layered.nested())
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"{key}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load(
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    defines: Sequence[str] = (),
) -> tuple[Settings, Layered]:
    layered = gather(config, environ or {}, defines)
    return build(layered), layered
