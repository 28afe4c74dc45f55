"""Configuration sources: aliases, precedence, properties files, secret files, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from atkproxy.sources import (
    REDACTED,
    ConfigError,
    Layered,
    automatiko_env_layer,
    canonical,
    canonical_key,
    define_layer,
    env_layer,
    env_name,
    expand,
    explain,
    flatten,
    gather,
    load,
    parse_properties,
    read_secret_files,
    secret_keys,
    select_profile,
)


@pytest.fixture(autouse=True)
def _no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the repository's config/atkproxy.yaml is not a source here


AUTO = "quarkus.automatiko.async.callback."
AUTO_ENV = "QUARKUS_AUTOMATIKO_ASYNC_CALLBACK_"

# --- the alias tables, written out so that a change to the mapping shows here ----------------

ALIASES = [
    ("auth-type", "type"),
    ("auth-basic", "basic"),
    ("auth-user", "user"),
    ("auth-password", "password"),
    ("auth-access-token", "access_token"),
    ("auth-client-id", "client_id"),
    ("auth-client-secret", "client_secret"),
    ("auth-refresh-token", "refresh_token"),
    ("auth-refresh-url", "token_url"),
    ("auth-scope", "scope"),
    ("auth-custom-name", "custom_name"),
    ("auth-custom-value", "custom_value"),
    ("auth-on-behalf-name", "on_behalf_name"),
    ("auth-query-name", "query_name"),
    ("auth-query-value", "query_value"),
    ("auth-any-destination", "any_destination"),
]


@pytest.mark.parametrize(("automatiko", "key"), ALIASES)
def test_automatiko_property_names(automatiko: str, key: str) -> None:
    assert canonical_key(AUTO + automatiko) == f"callback.auth.{key}"
    assert canonical_key(AUTO + automatiko + "_file") == f"callback.auth.{key}_file"


@pytest.mark.parametrize(("automatiko", "key"), ALIASES)
def test_automatiko_environment_names(automatiko: str, key: str) -> None:
    name = AUTO_ENV + automatiko.upper().replace("-", "_")
    assert automatiko_env_layer({name: "v"}) == ({f"callback.auth.{key}": "v"}, {
        f"callback.auth.{key}": name})  # fmt: skip
    files = automatiko_env_layer({name + "_FILE": "/s"})
    assert files == (
        {f"callback.auth.{key}_file": "/s"},
        {f"callback.auth.{key}_file": name + "_FILE"},
    )


@pytest.mark.parametrize(("name", "expected"), [
    ("callback.auth.type", None),  # atkproxy's own name
    ("listen.port", None),
    ("quarkus.http.port", None),  # not ours: the model rejects it later, by name
])  # fmt: skip
def test_names_that_are_not_aliases(name: str, expected: str | None) -> None:
    assert canonical_key(name) == expected


def test_unknown_automatiko_auth_property_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"auth-tyep: not an Automatiko property"):
        canonical_key(AUTO + "auth-tyep")
    with pytest.raises(ConfigError, match=r"AUTH_TYEP: not an Automatiko variable"):
        automatiko_env_layer({AUTO_ENV + "AUTH_TYEP": "basic"})


def test_own_name_wins_over_the_alias_in_one_source() -> None:
    layer = {"callback.auth.type": "basic", AUTO + "auth-type": "custom"}
    assert canonical(layer) == ({"callback.auth.type": "basic"}, {})
    env = {"ATKPROXY_CALLBACK__AUTH__TYPE": "basic", AUTO_ENV + "AUTH_TYPE": "custom"}
    layered = gather(None, env, [])
    assert layered.values == {"callback.auth.type": "basic"}
    assert layered.origin == {"callback.auth.type": "env ATKPROXY_CALLBACK__AUTH__TYPE"}


@pytest.mark.parametrize(("prop", "env"), [
    ("quarkus.automatiko.async.callback.auth-on-behalf-name",
     "QUARKUS_AUTOMATIKO_ASYNC_CALLBACK_AUTH_ON_BEHALF_NAME"),
    ("a.b-c", "A_B_C"),
    ("x.\"y\".z", "X__Y__Z"),
])  # fmt: skip
def test_env_name(prop: str, env: str) -> None:
    assert env_name(prop) == env


# --- precedence ---------------------------------------------------------------------------

KEY = "callback.auth.on_behalf_name"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sources(tmp_path: Path, file: str | None, props: str | None, env: dict[str, str],
            defines: list[str]) -> Layered:  # fmt: skip
    config = write(tmp_path / "c.yaml", file) if file is not None else None
    properties = write(tmp_path / "a.properties", props) if props is not None else None
    return gather(config, env, defines, properties)


OWN_FILE = "callback:\n  auth:\n    on_behalf_name: X-From-File\n"
AUTO_FILE = "quarkus.automatiko.async.callback.auth-on-behalf-name: X-From-File\n"
AUTO_NESTED = ("quarkus:\n  automatiko:\n    async:\n      callback:\n"
               "        auth-on-behalf-name: X-From-File\n")  # fmt: skip
PROPS = "quarkus.automatiko.async.callback.auth-on-behalf-name=X-From-Props\n"
OWN_ENV = {"ATKPROXY_CALLBACK__AUTH__ON_BEHALF_NAME": "X-From-Env"}
AUTO_ENV_SET = {AUTO_ENV + "AUTH_ON_BEHALF_NAME": "X-From-Env"}
OWN_D = [f"{KEY}=X-From-D"]
AUTO_D = [AUTO + "auth-on-behalf-name=X-From-D"]

PRECEDENCE = [
    ("file", OWN_FILE, None, {}, [], "X-From-File", "file"),
    ("file-automatiko", AUTO_FILE, None, {}, [], "X-From-File", "file"),
    ("file-automatiko-nested", AUTO_NESTED, None, {}, [], "X-From-File", "file"),
    ("props-over-file", OWN_FILE, PROPS, {}, [], "X-From-Props", "properties"),
    ("env-over-props", OWN_FILE, PROPS, OWN_ENV, [], "X-From-Env", "env"),
    ("env-over-file", OWN_FILE, None, OWN_ENV, [], "X-From-Env", "env"),
    ("d-over-all", OWN_FILE, PROPS, OWN_ENV, OWN_D, "X-From-D", "-D"),
    ("automatiko-everywhere", AUTO_FILE, PROPS, AUTO_ENV_SET, AUTO_D, "X-From-D", "-D"),
    ("automatiko-env-over-own-file", OWN_FILE, None, AUTO_ENV_SET, [], "X-From-Env", "env"),
    ("own-d-over-automatiko-env", AUTO_FILE, None, AUTO_ENV_SET, OWN_D, "X-From-D", "-D"),
    ("automatiko-d-over-own-env", OWN_FILE, None, OWN_ENV, AUTO_D, "X-From-D", "-D"),
]


@pytest.mark.parametrize(("file", "props", "env", "defines", "value", "origin"),
                         [c[1:] for c in PRECEDENCE], ids=[c[0] for c in PRECEDENCE])  # fmt: skip
def test_precedence(
    tmp_path: Path, file: str | None, props: str | None, env: dict[str, str],
    defines: list[str], value: str, origin: str,
) -> None:  # fmt: skip
    layered = sources(tmp_path, file, props, env, defines)
    assert layered.values == {KEY: value}
    assert layered.origin[KEY].startswith(origin)
    settings, _ = load(tmp_path / "c.yaml", env, defines,
                       tmp_path / "a.properties" if props else None)  # fmt: skip
    assert settings.callback.auth.on_behalf_name == value


def test_origin_names_the_alias_it_came_as(tmp_path: Path) -> None:
    layered = sources(tmp_path, AUTO_FILE, None, {}, [])
    assert layered.origin[KEY] == f"file {tmp_path / 'c.yaml'} {AUTO}auth-on-behalf-name"
    layered = sources(tmp_path, None, PROPS, AUTO_ENV_SET, [])
    assert layered.origin[KEY] == f"env {AUTO_ENV}AUTH_ON_BEHALF_NAME"
    layered = sources(tmp_path, None, None, {}, AUTO_D)
    assert layered.origin[KEY] == f"-D {AUTO}auth-on-behalf-name"


def test_a_whole_mode_from_automatiko_names(tmp_path: Path) -> None:
    env = {AUTO_ENV + "AUTH_TYPE": "OAUTH", AUTO_ENV + "AUTH_CLIENT_ID": "app",
           AUTO_ENV + "AUTH_CLIENT_SECRET": "s3", AUTO_ENV + "AUTH_SCOPE": "a b",
           AUTO_ENV + "AUTH_ANY_DESTINATION": "true"}  # fmt: skip
    settings, _ = load(None, env, [AUTO + "auth-refresh-url=https://idp/token"])
    auth = settings.callback.auth
    assert (auth.type, auth.client_id, auth.token_url, auth.scope) == (
        "oauth", "app", "https://idp/token", "a b")  # fmt: skip
    assert auth.client_secret is not None and auth.client_secret.get_secret_value() == "s3"
    assert auth.any_destination is True


def test_missing_key_is_a_startup_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, {AUTO_ENV + "AUTH_TYPE": "custom"}, [])
    assert "callback.auth.custom_name" in str(caught.value)
    assert "quarkus.automatiko.async.callback.auth-custom-name" in str(caught.value)


def test_an_unknown_quarkus_key_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match="quarkus"):
        load(None, {}, ["quarkus.http.port=8080"])


# --- .properties files --------------------------------------------------------------------

PROPERTIES = [
    ("equals", "a=1", {"a": "1"}),
    ("blanks-around", "  a  =  1", {"a": "1"}),
    ("colon", "a:1", {"a": "1"}),
    ("blank-separator", "a 1", {"a": "1"}),
    ("no-value", "a", {"a": ""}),
    ("empty-value", "a=", {"a": ""}),
    ("comments", "# one\n  ! two\n\na=1", {"a": "1"}),
    ("hash-in-value", "a=#not a comment", {"a": "#not a comment"}),
    ("second-separator-kept", "a=b=c", {"a": "b=c"}),
    ("continuation", "a=one \\\n    two", {"a": "one two"}),
    ("even-backslashes-end", "a=x\\\\\nb=y", {"a": "x\\", "b": "y"}),
    ("escaped-key", "key\\ with\\:odd\\=chars=v", {"key with:odd=chars": "v"}),
    ("escapes", "a=\\u00e9\\t\\n\\q", {"a": "é\t\nq"}),
    ("trailing-blanks-kept", "a=v  ", {"a": "v  "}),
    ("later-wins", "a=1\na=2", {"a": "2"}),
    ("crlf", "a=1\r\nb=2\r\n", {"a": "1", "b": "2"}),
    ("continued-comment-is-not", "a=1\\\n# not a comment", {"a": "1# not a comment"}),
    ("utf8", "a=pä", {"a": "pä"}),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PROPERTIES],
                         ids=[c[0] for c in PROPERTIES])  # fmt: skip
def test_parse_properties(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize(("profile", "expected"), [
    ("prod", {"a": "prod-a", "c": "3"}),
    ("dev", {"a": "dev-a", "b": "dev-b", "c": "3"}),
    ("test", {"a": "1", "c": "3"}),
])  # fmt: skip
def test_quarkus_profiles(profile: str, expected: dict[str, str]) -> None:
    props = {"a": "1", "%prod.a": "prod-a", "%dev.a": "dev-a", "%dev.b": "dev-b", "c": "3"}
    assert select_profile(props, profile) == expected


@pytest.mark.parametrize(("value", "props", "env", "expected"), [
    ("${SECRET}", {}, {"SECRET": "s"}, "s"),
    ("${cb.secret}", {}, {"CB_SECRET": "s"}, "s"),
    ("${cb.secret}", {"cb.secret": "p"}, {"CB_SECRET": "s"}, "p"),
    ("${missing:fallback}", {}, {}, "fallback"),
    ("${missing:}", {}, {}, ""),
    ("pre-${A}-${B}-post", {}, {"A": "1", "B": "2"}, "pre-1-2-post"),
    ("${outer}", {"outer": "<${inner}>", "inner": "x"}, {}, "<x>"),
    ("no expression", {}, {}, "no expression"),
])  # fmt: skip
def test_property_expressions(value: str, props: dict[str, str], env: dict[str, str],
                              expected: str) -> None:  # fmt: skip
    assert expand(value, props, env) == expected


def test_unresolved_expression_names_it() -> None:
    with pytest.raises(ConfigError, match=r"\$\{CB_SECRET\}: not set"):
        expand("${CB_SECRET}", {}, {})


def test_properties_file_takes_only_the_automatiko_auth_names(tmp_path: Path) -> None:
    props = write(tmp_path / "application.properties", "\n".join([
        "quarkus.http.port=8080",
        "quarkus.datasource.password=db-secret",
        "quarkus.automatiko.async.callback.auth-type=custom",
        "quarkus.automatiko.async.callback.auth-custom-name=X-Key",
        "quarkus.automatiko.async.callback.auth-any-destination=true",
        "%prod.quarkus.automatiko.async.callback.auth-custom-value=${KEY_VALUE}",
        "%dev.quarkus.automatiko.async.callback.auth-custom-value=dev-value",
    ]))  # fmt: skip
    settings, layered = load(None, {"KEY_VALUE": "k3y"}, [], props)
    auth = settings.callback.auth
    assert (auth.type, auth.custom_name) == ("custom", "X-Key")
    assert auth.custom_value is not None and auth.custom_value.get_secret_value() == "k3y"
    assert set(layered.values) == {"callback.auth.type", "callback.auth.custom_name",
                                   "callback.auth.custom_value",
                                   "callback.auth.any_destination"}  # fmt: skip
    assert layered.origin["callback.auth.type"] == f"properties {props} {AUTO}auth-type"
    settings, _ = load(None, {"QUARKUS_PROFILE": "dev"}, [], props)
    assert settings.callback.auth.custom_value.get_secret_value() == "dev-value"  # type: ignore[union-attr]


def test_unreadable_properties_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--properties"):
        load(None, {}, [], tmp_path / "absent.properties")


# --- secrets from files ----------------------------------------------------------------------


def test_secret_keys_are_the_secretstr_fields() -> None:
    assert secret_keys() >= {f"callback.auth.{k}" for k in (
        "basic", "password", "access_token", "client_secret", "refresh_token", "custom_value",
        "query_value")}  # fmt: skip
    assert "callback.auth.user" not in secret_keys()
    assert "callback.auth.client_id" not in secret_keys()


@pytest.mark.parametrize(("how", "env", "defines"), [
    ("own-env", {"ATKPROXY_CALLBACK__AUTH__PASSWORD_FILE": "{f}"}, []),
    ("automatiko-env", {AUTO_ENV + "AUTH_PASSWORD_FILE": "{f}"}, []),
    ("own-define", {}, ["callback.auth.password_file={f}"]),
    ("automatiko-define", {}, [AUTO + "auth-password_file={f}"]),
])  # fmt: skip
def test_secret_from_a_file(tmp_path: Path, how: str, env: dict[str, str],
                            defines: list[str]) -> None:  # fmt: skip
    secret = write(tmp_path / "password", "pä ss\n")  # as a Kubernetes Secret volume has it
    env = {k: v.format(f=secret) for k, v in env.items()}
    defines = [d.format(f=secret) for d in defines]
    settings, layered = load(None, env, [*defines, "callback.auth.type=basic",
                                         "callback.auth.user=ann",
                                         "callback.destinations.allow=[cb.example]"])  # fmt: skip
    password = settings.callback.auth.password
    assert password is not None and password.get_secret_value() == "pä ss"
    assert layered.origin["callback.auth.password"].endswith(f"(read from {secret})")
    assert "callback.auth.password_file" not in layered.values


def test_secret_file_overrides_a_lower_source(tmp_path: Path) -> None:
    secret = write(tmp_path / "s", "from-file")
    config = write(tmp_path / "c.yaml", "callback:\n  auth:\n    password: from-yaml\n")
    layered = gather(config, {"ATKPROXY_CALLBACK__AUTH__PASSWORD_FILE": str(secret)}, [])
    assert layered.values == {"callback.auth.password": "from-file"}


def test_secret_set_twice_in_one_source_is_an_error(tmp_path: Path) -> None:
    secret = write(tmp_path / "s", "x")
    with pytest.raises(ConfigError, match=r"callback\.auth\.password: set both"):
        read_secret_files({"callback.auth.password": "a",
                           "callback.auth.password_file": str(secret)}, {})  # fmt: skip


def test_unreadable_secret_file_names_the_key_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"callback.auth.client_secret_file: cannot read"):
        load(None, {"ATKPROXY_CALLBACK__AUTH__CLIENT_SECRET_FILE": str(tmp_path / "no")}, [])


def test_file_suffix_on_a_non_secret_key_is_not_read() -> None:
    values, _ = read_secret_files({"callback.auth.user_file": "/etc/passwd"}, {})
    assert values == {"callback.auth.user_file": "/etc/passwd"}


# --- what check-config shows -----------------------------------------------------------------

EVERY_SECRET = {
    "ATKPROXY_CALLBACK__AUTH__TYPE": "oauth",
    "ATKPROXY_CALLBACK__AUTH__BASIC": "c2VjcmV0OjE=",
    "ATKPROXY_CALLBACK__AUTH__PASSWORD": "secret-2",
    "ATKPROXY_CALLBACK__AUTH__ACCESS_TOKEN": "secret-3",
    "ATKPROXY_CALLBACK__AUTH__CLIENT_SECRET": "secret-4",
    AUTO_ENV + "AUTH_REFRESH_TOKEN": "secret-5",
    AUTO_ENV + "AUTH_CUSTOM_VALUE": "secret-6",
    AUTO_ENV + "AUTH_QUERY_VALUE": "secret-7",
}


def test_explain_redacts_secrets_and_says_where_values_came_from() -> None:
    defines = ["callback.auth.token_url=https://u:pw@idp/t", "store.url=memory://",
               "callback.destinations.allow=[cb.example]"]  # fmt: skip
    settings, layered = load(None, EVERY_SECRET, defines)
    shown = {key: (value, origin) for key, value, origin in explain(layered)}
    assert shown["callback.auth.type"] == ("oauth", "env ATKPROXY_CALLBACK__AUTH__TYPE")
    assert shown["callback.auth.refresh_token"] == (REDACTED, f"env {AUTO_ENV}AUTH_REFRESH_TOKEN")
    assert shown["callback.auth.token_url"] == (f"https://u:{REDACTED}@idp/t", "-D")
    assert "pw@" not in repr(shown) + repr(layered)
    text = repr(shown) + repr(layered) + repr(settings) + settings.model_dump_json()
    secrets = [v for k, v in EVERY_SECRET.items() if not k.endswith("TYPE")]
    assert all(secret not in text for secret in secrets)


# --- the parts kept from before -----------------------------------------------------------


def test_flatten_env_and_defines() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1], "e": {}}
    assert env_layer({"ATKPROXY_ASYNC__MAX_BODY": "2MiB", "OTHER": "x"}) == {
        "async.max_body": "2MiB"
    }
    assert define_layer(["a.b=1=2", " c = d"]) == {"a.b": "1=2", "c": " d"}
    with pytest.raises(ConfigError, match="expected key=value"):
        define_layer(["novalue"])


def test_deeper_key_replaces_a_section() -> None:
    layered = Layered()
    layered.add({"callback.auth": {}}, "file")
    layered.add({"callback.auth.type": "basic"}, "env")
    assert layered.values == {"callback.auth.type": "basic"}


def test_load_without_anything_gives_defaults() -> None:
    settings, layered = load()
    assert settings.callback.auth.type == "none"
    assert layered.values == {}
