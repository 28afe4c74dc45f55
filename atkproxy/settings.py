"""The typed configuration model (pure). Loading and layering of sources is in sources.py.

Durations are written `250ms`, `30s`, `5m`, `2h`, `7d` (a bare number is seconds);
sizes `512`, `64KiB`, `1MiB`, `1MB`.
"""

from __future__ import annotations

import json
import re
import ssl
from typing import Annotated, Any, Literal

import yaml
from cryptography.fernet import Fernet
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from yarl import URL

from .auth.config import CallbackAuthSettings
from .destinations import check_entries
from .jobs import AtkStatus
from .signing import decode_secret
from .templates import compile_template
from .tls import client_context

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    None: 1,
}


def parse_duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"invalid duration {value!r} (use e.g. 250ms, 30s, 5m, 2h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"invalid size {value!r} (use e.g. 512, 64KiB, 1MiB)")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _yaml_if_text(value: Any) -> Any:
    """Lists given as text (from the environment or -D) are parsed as YAML/JSON."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}".replace("\n", " ")) from None


def _str_keys(value: Any) -> Any:
    """YAML reads `1: Active` with an int key; values are matched as JSON text."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(k): v for k, v in value.items()}
    return value


def _str_items(value: Any) -> Any:
    """Status patterns: `404` and `"404"` alike."""
    return [str(v) for v in value] if isinstance(value, list) else value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Durations = Annotated[list[Duration], BeforeValidator(_yaml_if_text)]


class Section(BaseModel):
    # inputs are not echoed in errors: a section may hold a secret
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)


class Listen(Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    # a request's header must be complete this long after its first byte (or the connection)
    header_timeout: Duration = Field(10.0, gt=0)
    body_timeout: Duration = Field(30.0, gt=0)  # an async request's whole body
    keepalive_timeout: Duration = Field(75.0, gt=0)  # idle between requests (> a balancer's)
    max_connections: int = Field(1000, ge=1)  # beyond it, new connections get a 503
    # After SIGTERM, new connections are still served this long (readiness already says 503)
    # so that load balancers and endpoints stop sending traffic before the listener closes.
    shutdown_delay: Duration = 5.0
    # peers whose X-Forwarded-*, Forwarded and X-Real-IP are kept (forwarded.py): CIDRs
    trusted_proxies: Annotated[list[IPvAnyNetwork], BeforeValidator(_yaml_if_text)] = []


class RetrySchedule(Section):
    """Delays before each next try (the last repeats), for at most `max_age` in all."""

    schedule: Durations
    max_age: Duration

    @field_validator("schedule")
    @classmethod
    def _not_empty(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("needs at least one delay")
        return value


class UpstreamRetry(RetrySchedule):
    """A request that never reached the upstream (refused, connect timeout) is tried again."""

    schedule: Durations = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    max_age: Duration = 300.0


class CallbackRetry(RetrySchedule):
    """Delays before each attempt (Standard Webhooks' spirit); jobs out of schedule are dead."""

    schedule: Durations = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    max_age: Duration = 3 * 86400.0
    stop_on: Annotated[list[int], BeforeValidator(_yaml_if_text)] = [410]


class TlsSettings(Section):
    """https: the server's certificate is verified (tls.py); `ca_file` replaces the system CAs."""

    ca_file: str | None = None
    cert_file: str | None = None  # a client certificate, for a server that asks for one
    key_file: str | None = None  # its key, unless in cert_file
    verify: bool = True  # false: no verification at all (a test bed only; warned at start)

    @model_validator(mode="after")
    def _loadable(self) -> TlsSettings:
        if self.ca_file or self.cert_file or self.key_file:
            self.context()  # a file that cannot be used is a configuration error, at load
        return self

    def context(self) -> ssl.SSLContext:
        return client_context(self.ca_file, self.cert_file, self.key_file, self.verify)


class UpstreamSettings(Section):
    url: str = "http://127.0.0.1:8081"
    timeout: Duration = 30.0
    connect_timeout: Duration = 5.0
    max_connections: int = Field(100, ge=1)
    retry: UpstreamRetry = UpstreamRetry()
    tls: TlsSettings = TlsSettings()

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        if url.raw_user is not None:  # it would clash with the clients' own Authorization
            raise ValueError("must not carry user info")
        return value.rstrip("/")


class StoreSettings(Section):
    url: str = "sqlite:///atkproxy-jobs.db"
    retention: Duration = 7 * 86400.0
    # how long a job stays with a worker that stopped renewing it (a dead replica)
    lease: Duration = Field(30.0, gt=0)
    # how often the store is asked for due jobs besides the wake-ups of this process
    poll: Duration = Field(1.0, gt=0)
    # Credentials among the recorded request headers: encrypted at rest with secret_key (a
    # Fernet key), or, without one, never written to a durable store (kept in memory only).
    protected_headers: Annotated[list[str], BeforeValidator(_yaml_if_text)] = [
        "Authorization", "Proxy-Authorization", "Cookie",
    ]  # fmt: skip
    secret_key: SecretStr | None = None
    # Redis only: the password (or store.password_file), and the prefix of every key, so
    # that several services can share one Redis database.
    password: SecretStr | None = None
    redis_prefix: str = "atkproxy:"

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Fernet(value.get_secret_value().encode())
            except ValueError:
                raise ValueError(
                    "must be a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "sqlite:///", "redis://", "rediss://")):
            raise ValueError(
                f"unsupported store {value!r} (use memory://, sqlite:///path or redis://host)"
            )
        redis = URL(value) if value.startswith(("redis://", "rediss://")) else None
        if redis is not None and (redis.password is not None or "password" in redis.query):
            # the URL is shown in logs and errors: the password goes where secrets go
            raise ValueError("put the Redis password in store.password or store.password_file")
        return value


IdFrom = Literal["path", "query", "header", "body", "assign"]
InjectTo = Literal["query", "header", "body"]


class IdSource(Section):
    """One way to find the instance id; a route tries its sources in order."""

    source: IdFrom = Field(alias="from")
    name: str | None = None  # path parameter, query parameter, header, or JSON pointer (body)
    inject: InjectTo | None = None  # assign only: where the backend is told the new id

    @model_validator(mode="after")
    def _complete(self) -> IdSource:
        if self.source != "assign" and not self.name:
            raise ValueError(f"id source '{self.source}' needs a name")
        if self.inject and not self.name:
            raise ValueError("an assigned id injected upstream needs a name")
        if self.source == "body" and not self.name.startswith("/"):  # type: ignore[union-attr]
            raise ValueError(f"body id source needs a JSON pointer, got {self.name!r}")
        return self


class Route(Section):
    path: str
    methods: list[str] = ["POST", "PUT", "PATCH", "DELETE"]
    start: bool = False  # a start answers with the request's JSON object, id set
    json_body: bool | None = Field(None, alias="json")  # body must be JSON (default: start)
    id: list[IdSource] = [IdSource.model_validate({"from": "assign"})]
    replay_safe: bool = False  # may be re-run after a crash interrupted it

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            compile_template(value)
        except re.error as exc:
            raise ValueError(f"invalid path template {value!r}: {exc}") from None
        return value

    @property
    def wants_json(self) -> bool:
        return self.start if self.json_body is None else self.json_body


class AsyncSection(Section):
    max_body: Size = 1024 * 1024
    max_headers: Size = 64 * 1024  # all header lines of an async request; beyond it, 431
    max_result: Size = 10 * 1024 * 1024  # a job's upstream answer is recorded up to this size
    # bytes of upstream answers this process's jobs hold at once (budget.py); 0: no bound.
    # Six answers of the default max_result: 16 jobs of 10 MiB answers peak under 250 MB
    max_answer_memory: Size = 64 * 1024 * 1024
    max_inflight: int = Field(16, ge=1)  # background upstream calls at once
    max_queue: int = Field(1000, ge=1)  # accepted jobs waiting; beyond it, 503 + Retry-After
    retry_after: int = Field(1, ge=0)  # seconds, on the 202 and on 503s
    drain_timeout: Duration = 10.0  # on shutdown, how long running jobs may finish
    routes: Annotated[list[Route], BeforeValidator(_yaml_if_text)] = []


class CallbackDestinations(Section):
    """Where callbacks may go (see destinations.py): host names (`*.` wildcards) and CIDRs."""

    allow: Annotated[list[str], BeforeValidator(_yaml_if_text)] = []
    deny: Annotated[list[str], BeforeValidator(_yaml_if_text)] = []

    @field_validator("allow", "deny")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        return check_entries(value)


def _secret_list(value: Any) -> Any:
    """Secrets given as text (env, -D, a `_file`): whitespace or commas between them."""
    if isinstance(value, str) and not value.lstrip().startswith("["):
        return [part for part in re.split(r"[\s,]+", value) if part]
    return _yaml_if_text(value)


class CallbackSigning(Section):
    """Standard Webhooks signatures (signing.py); several secrets during a rotation."""

    secrets: Annotated[list[SecretStr], BeforeValidator(_secret_list)] = []

    @field_validator("secrets")
    @classmethod
    def _whsec(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            decode_secret(secret.get_secret_value())
        return value

    @property
    def keys(self) -> list[bytes]:
        return [decode_secret(secret.get_secret_value()) for secret in self.secrets]


class CallbackSettings(Section):
    timeout: Duration = 10.0
    max_inflight: int = Field(32, ge=1)  # deliveries at once, apart from the upstream calls
    retry: CallbackRetry = CallbackRetry()
    no_callback_statuses: Annotated[list[int], BeforeValidator(_yaml_if_text)] = [401, 403]
    auth: CallbackAuthSettings = CallbackAuthSettings()
    destinations: CallbackDestinations = CallbackDestinations()
    signing: CallbackSigning = CallbackSigning()
    tls: TlsSettings = TlsSettings()

    @model_validator(mode="after")
    def _credentials_to_trusted_receivers(self) -> CallbackSettings:
        trusted = bool(self.destinations.allow) or self.auth.any_destination
        if self.auth.type != "none" and not trusted:
            raise ValueError(
                f"callback.auth.type is '{self.auth.type}': its credentials go only to "
                "receivers listed in callback.destinations.allow; set it, or set "
                "callback.auth.any_destination: true to send them to any permitted URL"
            )
        return self


class StatusRule(Section):
    """First matching rule wins; `status` patterns are `2xx`, `404` or `*`."""

    status: Annotated[list[str], BeforeValidator(_str_items)] = ["*"]
    methods: list[str] = ["*"]  # request methods the rule is for
    pointer: str | None = None
    values: Annotated[dict[str, AtkStatus] | None, BeforeValidator(_str_keys)] = None
    probe: str | None = None  # GET this path template; its status maps via probe_map
    probe_map: dict[int, AtkStatus] = {200: AtkStatus.ACTIVE, 404: AtkStatus.COMPLETED}
    result: AtkStatus | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> StatusRule:
        kinds = [self.pointer is not None, self.probe is not None, self.result is not None]
        if sum(kinds) != 1:
            raise ValueError("a status rule needs exactly one of: pointer (+values), probe, result")
        if self.pointer is not None and not self.values:
            raise ValueError("a pointer rule needs a values map")
        return self


class StatusSection(Section):
    rules: Annotated[list[StatusRule], BeforeValidator(_yaml_if_text)] = []
    # a probe with no answer (or one its map does not name) is asked again for this long
    probe_max_age: Duration = 120.0


class ManagementListen(Section):
    """With a port, the management API answers here only, and the main port passes all through."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)


class Management(Section):
    prefix: str = "/_atk"
    listen: ManagementListen = ManagementListen()
    # Bearer token for the job list and re-drive; without one they answer loopback peers only
    token: SecretStr | None = None
    # keys the owner digest of jobs (ownership.py) when store.secret_key is not set
    owner_key: SecretStr | None = None

    @field_validator("prefix")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value.rstrip("/")


class Logging(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    access: bool = True  # one line per request

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Settings(Section):
    listen: Listen = Listen()
    upstream: UpstreamSettings = UpstreamSettings()
    store: StoreSettings = StoreSettings()
    async_: AsyncSection = Field(AsyncSection(), alias="async")
    callback: CallbackSettings = CallbackSettings()
    status: StatusSection = StatusSection()
    management: Management = Management()
    logging: Logging = Logging()

    @model_validator(mode="after")
    def _listeners_apart(self) -> Settings:
        own = self.management.listen
        if own.port and own.port == self.listen.port:
            raise ValueError("management.listen.port must differ from listen.port")
        return self
