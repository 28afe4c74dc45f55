"""Configuration sources, layered lowest to highest:

    YAML file  <  --properties file (Automatiko names)  <  environment  <  -D key=value

Each source becomes a flat layer of dotted keys (`async.max_body`) so that layers merge
key by key and every effective value can say where it came from. Automatiko's property
names (`quarkus.automatiko.async.callback.auth-*`) and their environment forms are aliases
of atkproxy's own keys (`callback.auth.*`); within one source atkproxy's own name wins.
A secret can be read from a file: `<key>_file` (the Kubernetes Secret volume convention).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from .auth.config import AUTOMATIKO_NAMES, AUTOMATIKO_PREFIX, PREFIX
from .redact import REDACTED, mask_url
from .settings import Settings

ENV_PREFIX = "ATKPROXY_"
DEFAULT_CONFIG_PATHS = (Path("/etc/atkproxy/config.yaml"), Path("config/atkproxy.yaml"))
FILE_SUFFIX = "_file"

Source = tuple[dict[str, Any], dict[str, str]]  # values, and the name each key was given as


class ConfigError(Exception):
    """An invalid configuration; the message names the key and the problem."""


@dataclass
class Layered:
    values: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets
    origin: dict[str, str] = field(default_factory=dict)

    def add(
        self, layer: Mapping[str, Any], origin: str, detail: Mapping[str, str] | None = None
    ) -> None:
        """Lay `layer` over what is there; `detail` says, per key, the name it was given as."""
        for key, value in layer.items():
            # a deeper key replaces a whole section set lower, and the other way round
            nested = [k for k in self.values if k.startswith(key + ".") or key.startswith(k + ".")]
            for old in nested:
                del self.values[old]
                del self.origin[old]
            self.values[key] = value
            extra = (detail or {}).get(key)
            self.origin[key] = f"{origin} {extra}" if extra else origin

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


def env_key(name: str) -> str:
    """`ATKPROXY_ASYNC__MAX_BODY` -> `async.max_body`."""
    return name[len(ENV_PREFIX) :].lower().replace("__", ".")


def is_config_env(name: str) -> bool:
    """`ATKPROXY_<SECTION>__<KEY>` only: Kubernetes service links (`ATKPROXY_PORT`,
    `ATKPROXY_SERVICE_HOST`, set for a Service named atkproxy) are not configuration."""
    return name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX) :]


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """atkproxy's own variables: `ATKPROXY_ASYNC__MAX_BODY=2MiB` -> `async.max_body`."""
    return {env_key(name): value for name, value in environ.items() if is_config_env(name)}


def define_layer(defines: Sequence[str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for item in defines:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-D {item!r}: expected key=value")
        layer[key.strip()] = value
    return layer


# -- Automatiko names -------------------------------------------------------------------


def env_name(prop: str) -> str:
    """A property's environment form, as MicroProfile Config maps it: `a.b-c` -> `A_B_C`."""
    return re.sub(r"[^A-Za-z0-9]", "_", prop).upper()


ALIASES: dict[str, str] = {  # Automatiko property -> atkproxy key
    AUTOMATIKO_PREFIX + alias: PREFIX + key for key, alias in AUTOMATIKO_NAMES.items()
}
ENV_ALIASES: dict[str, str] = {env_name(prop): key for prop, key in ALIASES.items()}
_AUTOMATIKO_AUTH = AUTOMATIKO_PREFIX + "auth-"
_AUTOMATIKO_ENV_AUTH = env_name(_AUTOMATIKO_AUTH)


def _split_file(name: str) -> tuple[str, str]:
    if name.lower().endswith(FILE_SUFFIX):
        return name[: -len(FILE_SUFFIX)], FILE_SUFFIX
    return name, ""


def canonical_key(name: str) -> str | None:
    """atkproxy's key for an Automatiko property name (also `<name>_file`); None if not one."""
    base, suffix = _split_file(name)
    key = ALIASES.get(base)
    if key is None and name.startswith(_AUTOMATIKO_AUTH):
        known = ", ".join(sorted(AUTOMATIKO_NAMES.values()))
        raise ConfigError(f"{name}: not an Automatiko property atkproxy knows (known: {known})")
    return None if key is None else key + suffix


def canonical(layer: Mapping[str, Any]) -> Source:
    """Automatiko names renamed to atkproxy's keys (own names win); detail names the alias."""
    own: dict[str, Any] = {}
    aliased: dict[str, Any] = {}
    detail: dict[str, str] = {}
    for name, value in layer.items():
        key = canonical_key(name)
        if key is None:
            own[name] = value
        else:
            aliased[key] = value
            detail[key] = name
    for key in own:
        detail.pop(key, None)
    return aliased | own, detail


def automatiko_env_layer(environ: Mapping[str, str]) -> Source:
    """`QUARKUS_AUTOMATIKO_ASYNC_CALLBACK_AUTH_TYPE` (also `..._FILE`) -> `callback.auth.type`."""
    layer: dict[str, Any] = {}
    detail: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(_AUTOMATIKO_ENV_AUTH):
            continue
        base, suffix = _split_file(name)
        key = ENV_ALIASES.get(base)
        if key is None:
            raise ConfigError(f"{name}: not an Automatiko variable atkproxy knows")
        layer[key + suffix.lower()] = value
        detail[key + suffix.lower()] = name
    return layer, detail


def env_source(environ: Mapping[str, str]) -> Source:
    """Both environment forms; atkproxy's own variables win over Automatiko's."""
    layer, detail = automatiko_env_layer(environ)
    for name, value in environ.items():
        if is_config_env(name):
            layer[env_key(name)] = value
            detail[env_key(name)] = name
    return layer, detail


# -- Java .properties (an Automatiko application.properties) ----------------------------

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_EXPRESSION = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")
_BLANKS = " \t\f"


def parse_properties(text: str) -> dict[str, str]:
    """A `.properties` text as java.util.Properties reads it (later keys win)."""
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        key, value = _split_entry(line)
        result[_unescape(key)] = _unescape(value)
    return result


def _logical_lines(text: str) -> Iterator[str]:
    pending: str | None = None
    for natural in text.splitlines():
        line = natural.lstrip(_BLANKS)
        if pending is None and (not line or line[0] in "#!"):
            continue
        backslashes = len(line) - len(line.rstrip("\\"))
        if backslashes % 2 == 1:  # continued on the next line
            pending = (pending or "") + line[:-1]
            continue
        yield (pending or "") + line
        pending = None
    if pending is not None:
        yield pending


def _split_entry(line: str) -> tuple[str, str]:
    """Key up to the first unescaped `=`, `:` or blank; then one `=`/`:` between blanks."""
    i = 0
    while i < len(line) and line[i] not in "=:" + _BLANKS:
        i += 2 if line[i] == "\\" else 1
    key, rest = line[:i], line[i:].lstrip(_BLANKS)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_BLANKS)
    return key, rest


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


def select_profile(props: Mapping[str, str], profile: str) -> dict[str, str]:
    """Quarkus profiles: `%prod.key` overrides `key` in profile prod; other profiles drop."""
    plain = {k: v for k, v in props.items() if not k.startswith("%")}
    marker = f"%{profile}."
    chosen = {k[len(marker) :]: v for k, v in props.items() if k.startswith(marker)}
    return plain | chosen


def expand(value: str, props: Mapping[str, str], environ: Mapping[str, str], depth: int = 0) -> str:
    """`${name}` and `${name:default}` from the file itself, else the environment."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = props.get(name, environ.get(name, environ.get(env_name(name))))
        if found is None and default is None:
            raise ConfigError(f"${{{name}}}: not set in the properties file or the environment")
        if found is None or depth >= 8:
            return default or ""
        return expand(found, props, environ, depth + 1)

    return _EXPRESSION.sub(one, value)


def properties_layer(path: Path, environ: Mapping[str, str]) -> Source:
    """The Automatiko callback-auth properties of the file, as atkproxy keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--properties {path}: cannot read: {exc}") from exc
    props = select_profile(parse_properties(text), environ.get("QUARKUS_PROFILE", "prod"))
    wanted = {k: v for k, v in props.items() if k.startswith(_AUTOMATIKO_AUTH)}
    return canonical({k: expand(v, props, environ) for k, v in wanted.items()})


# -- secrets ------------------------------------------------------------------------------


@cache
def secret_keys(model: type[BaseModel] = Settings, prefix: str = "") -> frozenset[str]:
    """The dotted keys whose values are secrets (typed SecretStr in the model)."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        for kind in _kinds(info.annotation):
            if kind is SecretStr:
                keys.add(key)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                keys |= secret_keys(kind, key + ".")
    return frozenset(keys)


def _kinds(annotation: Any) -> Iterator[Any]:
    yield annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            yield from _kinds(arg)


def read_secret_files(layer: Mapping[str, Any], detail: Mapping[str, str]) -> Source:
    """`<secret>_file: /path` becomes `<secret>: <the file's text, one final newline cut>`."""
    values = dict(layer)
    named = dict(detail)
    for key in [k for k in layer if k.endswith(FILE_SUFFIX)]:
        base = key[: -len(FILE_SUFFIX)]
        if base not in secret_keys():
            continue
        if base in layer:
            raise ConfigError(f"{base}: set both directly and as {key}; keep one")
        path = Path(str(values.pop(key)))
        values[base] = _read_secret(key, path)
        named[base] = f"{named.pop(key, key)} (read from {path})"
    return values, named


def _read_secret(key: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.__class__.__name__}") from None
    return text.removesuffix("\n").removesuffix("\r")


def redacted(key: str, value: Any) -> Any:
    """The value as check-config may show it: secrets hidden, URL passwords masked."""
    if key in secret_keys():
        return REDACTED
    return mask_url(value) if isinstance(value, str) else value


def explain(layered: Layered) -> list[tuple[str, Any, str]]:
    """(key, value as shown, where it came from) for every value set, secrets redacted."""
    return [
        (key, redacted(key, layered.values[key]), layered.origin[key])
        for key in sorted(layered.values)
    ]


# -- putting it together ----------------------------------------------------------------


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--config {explicit}: no such file")
        return explicit
    return next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)


def gather(
    config: Path | None,
    environ: Mapping[str, str],
    defines: Sequence[str],
    properties: Path | None = None,
) -> Layered:
    layered = Layered()
    path = find_config(config)
    if path is not None:
        _add(layered, f"file {path}", canonical(yaml_layer(path)))
    if properties is not None:
        _add(layered, f"properties {properties}", properties_layer(properties, environ))
    _add(layered, "env", env_source(environ))
    _add(layered, "-D", canonical(define_layer(defines)))
    return layered


def _add(layered: Layered, origin: str, source: Source) -> None:
    values, detail = read_secret_files(*source)
    layered.add(values, origin, detail)


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
    properties: Path | None = None,
) -> tuple[Settings, Layered]:
    layered = gather(config, environ or {}, defines, properties)
    return build(layered), layered
