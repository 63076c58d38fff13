"""Layered settings: built-in defaults < user config.yaml < project .clave.json < CLAVE_* env.

Each file is checked against its JSON Schema (`clave/schemas/`) before any value is used, so a
bad file stops clave with one sentence (file, key, what was expected) before anything exists.
jsonschema and yaml are imported only when there is a file or variable to check: commands that
never read settings, and runs with no config at all, do not pay for them; nor do settings
that passed before unchanged (valid_cache.py).
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clave.errors import ConfigError, UsageError
from clave.home import Home, user_config_dir
from clave.valid_cache import ValidCache

PROJECT_FILE = ".clave.json"
USER_FILE = "config.yaml"
SCHEMA_DIR = Path(__file__).parent / "schemas"

DEFAULT = "default"
GIVEN = "given"

# Every setting, in display order, with its built-in value (the plan's config/clave.php).
DEFAULTS: dict[str, Any] = {
    "base_image": "ghcr.io/cirruslabs/ubuntu:latest",
    "base_vm": "clave-base",
    "vm.cpus": 4,
    "vm.memory": 8192,
    "vm.disk_size": None,
    "ssh.user": "admin",
    "ssh.port": 22,
    "ssh.password": "admin",
    "ssh.connect_timeout": 5,
    "services.mode": "tunnel",
    "services.mysql_port": 3306,
    "services.redis_port": 6379,
    "herd.enabled": True,
    "tunnel.port_min": 8081,
    "tunnel.port_max": 8199,
    "git.copy_files": [".env"],
    "bootstrap.required": False,
    "bootstrap.composer": True,
    "bootstrap.migrate": True,
    "provision.extra_steps": [],
    "on_exit": None,
    "auth_file": "~/.config/clave/auth.json",
}

ENV_VARS: dict[str, str] = {
    "base_image": "CLAVE_BASE_IMAGE",
    "base_vm": "CLAVE_BASE_VM",
    "vm.cpus": "CLAVE_VM_CPUS",
    "vm.memory": "CLAVE_VM_MEMORY",
    "vm.disk_size": "CLAVE_VM_DISK_SIZE",
    "ssh.user": "CLAVE_SSH_USER",
    "ssh.port": "CLAVE_SSH_PORT",
    "ssh.password": "CLAVE_SSH_PASSWORD",
    "ssh.connect_timeout": "CLAVE_SSH_CONNECT_TIMEOUT",
    "services.mode": "CLAVE_SERVICES_MODE",
    "services.mysql_port": "CLAVE_MYSQL_PORT",
    "services.redis_port": "CLAVE_REDIS_PORT",
    "herd.enabled": "CLAVE_HERD_ENABLED",
    "on_exit": "CLAVE_ON_EXIT",
    "auth_file": "CLAVE_AUTH_FILE",
}

SECRETS = frozenset({"ssh.password"})
SECTIONS = frozenset(path.split(".")[0] for path in DEFAULTS if "." in path)

_MISSING = object()  # a file that does not exist (JSON `null` is a file that is wrong)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Settings:
    """The merged settings and, for each dotted key, the layer it came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def get(self, path: str) -> Any:
        """A setting (`vm.cpus`) or a whole section (`vm`) as a dict."""
        if path in self.values:
            return copy.deepcopy(self.values[path])
        section = {key.split(".", 1)[1]: copy.deepcopy(value)
                   for key, value in self.values.items() if key.startswith(f"{path}.")}
        if not section:
            raise KeyError(f"unknown setting {path!r}")
        return section

    def source(self, path: str) -> str:
        """Where the value came from: `default`, a file as the user knows it, `env CLAVE_X`."""
        return self.sources[path]

    def as_dict(self) -> dict[str, Any]:
        return _nest((path, copy.deepcopy(value)) for path, value in self.values.items())

    def items(self) -> list[tuple[str, Any, str]]:
        return [(path, copy.deepcopy(self.values[path]), self.sources[path]) for path in DEFAULTS]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        """Defaults overlaid with `data` (nested, or dotted keys), validated like a user file."""
        layer = _check(_nest(_flatten_dotted(data)), "user", origin="Settings.from_dict")
        settings = _merge([(GIVEN, layer)])
        _check_port_range(settings)
        return settings


def defaults() -> Settings:
    return _merge([])


def load(project_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read every layer, refusing the first invalid one with a ConfigError (exit 2).

    `project_dir` holds `.clave.json` (default: the current directory); `environ` supplies
    the CLAVE_* overrides (default: os.environ). The user file is `user_config_file()`.
    """
    env = os.environ if environ is None else environ
    project = (Path.cwd() if project_dir is None else Path(project_dir)) / PROJECT_FILE
    layers = []
    for path, schema in ((user_config_file(), "user"), (project, "project")):
        data = _read(path)
        if data is not _MISSING:
            layers.append((display_path(path), _check(data, schema, display_path(path))))
    layers.extend(_env_layers(env))
    settings = _merge(layers)
    _check_port_range(settings)
    return settings


def user_config_file() -> Path:
    return user_config_dir() / USER_FILE


def display_path(path: Path) -> str:
    """The path as the user knows it: `.clave.json` here, `~/.config/…` under home."""
    path = Path(os.path.abspath(path))
    if path.parent == Path.cwd():
        return path.name
    if path.is_relative_to(Path.home()):
        return f"~/{path.relative_to(Path.home())}"
    return str(path)


def require_key(path: str, *, leaf: bool = False) -> None:
    """Refuse a key that is not a setting (or, with `leaf`, is a whole section)."""
    if path in DEFAULTS or (not leaf and path in SECTIONS):
        return
    if path in SECTIONS:
        example = next(key for key in DEFAULTS if key.startswith(f"{path}."))
        raise UsageError(f"'{path}' is a section, not a setting: name one of its keys, "
                         f"such as '{example}'.")
    hint = _did_you_mean(path, list(DEFAULTS) if leaf else [*DEFAULTS, *SECTIONS])
    raise UsageError(f"unknown setting '{path}'{hint}; `clave config` lists them all.")


def parse_value(path: str, text: str) -> Any:
    """Turn command-line or environment text into the type the schema wants for `path`.

    Text that does not fit is returned unchanged, so validation names what was expected.
    """
    schema = _leaf_schemas()[path]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    word = text.strip()
    nullable = "null" in types or None in schema.get("enum", ())
    if nullable and word.lower() == "null":
        return None
    if "integer" in types and re.fullmatch(r"[+-]?\d+", word):
        return int(word)
    if "boolean" in types and word.lower() in _TRUE | _FALSE:
        return word.lower() in _TRUE
    if "array" in types:
        if word.startswith("["):
            try:
                return json.loads(word)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: {text!r} is not a JSON list ({err.msg}).") from None
        return [item.strip() for item in word.split(",") if item.strip()]
    return text if "string" in types else word  # a password may start or end with a space


def check_value(path: str, value: Any, origin: str | None = None) -> None:
    """Validate one setting's value; the message starts with `origin` (default: the key)."""
    problem = _problem(_nest([(path, value)]), "user")
    if problem:
        item = (problem.path or path).removeprefix(path)  # `[2]` for one item of a list
        raise ConfigError(f"{origin or path}{item}: {problem.message}")


def read_user_file() -> dict[str, Any]:
    """The user file's own (validated) contents, nested; {} when there is none."""
    path = user_config_file()
    data = _read(path)
    if data is _MISSING:
        return {}
    _check(data, "user", display_path(path))
    return data


def write_user_file(data: Mapping[str, Any]) -> Path:
    """Validate, then replace the user file atomically: directory 0700, file 0600."""
    path = user_config_file()
    origin = display_path(path)
    _check_port_range(_merge([(origin, _check(dict(data), "user", origin))]))
    import yaml

    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
        path.parent.chmod(0o700)
    text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False) if data else ""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{USER_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- reading and checking one layer ------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    path: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _read(path: Path) -> Any:
    """The parsed file, {} for an empty YAML file, _MISSING when it does not exist."""
    origin = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _MISSING
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(f"{origin}: cannot be read ({reason}).") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{origin}: line {err.lineno}, column {err.colno}: "
                              f"{err.msg} (not valid JSON).") from None
    return _parse_yaml(text, origin)


def _parse_yaml(text: str, origin: str) -> Any:
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{origin}: {where}{problem} (not valid YAML).") from None
    return {} if data is None else data


def _check(data: Any, schema: str, origin: str) -> dict[str, Any]:
    """Validate one layer and return it flattened to dotted keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of settings "
                          f"(like {{\"vm\": {{\"cpus\": 4}}}}), not {_kind(data)}.")
    if data:
        problem = _problem(data, schema)
        if problem:
            raise ConfigError(f"{origin}: {problem}")
    return _flatten(data)


def _problem(data: dict[str, Any], schema: str) -> _Problem | None:
    """The single most useful schema error: an unknown key first (likely a typo), else
    jsonschema's best match."""
    cache = _valid_cache()
    key = cache.key(schema, _schema_text(schema), _schema_text("definitions"), data)
    if key in cache:
        return None
    from jsonschema.exceptions import best_match

    errors = list(_validator(schema).iter_errors(data))
    if not errors:
        cache.add(key)
        return None
    for error in errors:
        if error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            extra = next(str(key) for key in error.instance if key not in known)
            return _Problem(None, _unknown_key(_join([*error.absolute_path, extra]), schema))
    error = best_match(errors)
    return _Problem(_join(error.absolute_path) or None, _explain(error))


def _unknown_key(path: str, schema: str) -> str:
    allowed = _schema(schema)["properties"]
    if path in DEFAULTS and path not in allowed and "." not in path:
        return (f"'{path}' can only be set in {display_path(user_config_file())} "
                f"or {ENV_VARS[path]}, not in a project file")
    if path in DEFAULTS:
        section, key = path.split(".", 1)
        return f"key '{path}' must be nested: '{key}' inside '{section}'"
    known = [key for key in [*DEFAULTS, *SECTIONS] if key.split(".")[0] in allowed]
    return f"unknown key '{path}'{_did_you_mean(path, known)}"


def _explain(error: Any) -> str:
    if error.validator == "enum":
        choices = [choice for choice in error.validator_value if choice is not None]
        listed = ", ".join(choices) + (", null" if None in error.validator_value else "")
        hint = _did_you_mean(error.instance, choices) if isinstance(error.instance, str) else ""
        return f"{error.instance!r} is not one of {listed}{hint}"
    return error.message


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _kind(value: Any) -> str:
    names = {type(None): "null", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _join(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- the environment layer ----------------------------------------------------------------


def _env_layers(environ: Mapping[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One layer per CLAVE_* variable, so `source()` names the variable. Empty means unset."""
    for path, variable in ENV_VARS.items():
        text = environ.get(variable, "")
        if text.strip():
            value = parse_value(path, text)
            check_value(path, value, origin=variable)
            yield f"env {variable}", {path: value}


# --- merging -------------------------------------------------------------------------------


def _merge(layers: Iterable[tuple[str, dict[str, Any]]]) -> Settings:
    values, sources = dict(DEFAULTS), dict.fromkeys(DEFAULTS, DEFAULT)
    for source, layer in layers:
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    return Settings(values=values, sources=sources)


def _check_port_range(settings: Settings) -> None:
    low, high = settings.get("tunnel.port_min"), settings.get("tunnel.port_max")
    if low > high:
        raise ConfigError(
            f"tunnel.port_min ({low}, from {settings.source('tunnel.port_min')}) is above "
            f"tunnel.port_max ({high}, from {settings.source('tunnel.port_max')}): "
            "the tunnel needs port_min <= port_max.")


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested (validated) data to dotted keys; YAML's `4.0` becomes the integer 4."""
    flat = {}
    for key, value in data.items():
        if key in SECTIONS:
            flat.update({f"{key}.{sub}": item for sub, item in value.items()})
        else:
            flat[key] = value
    return {path: int(value) if path in _integer_keys() and isinstance(value, float) else value
            for path, value in flat.items()}


def _flatten_dotted(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            yield from ((f"{key}.{sub}", item) for sub, item in value.items())
        else:
            yield key, value


def _nest(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in pairs:
        *sections, key = path.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return nested


# --- the schemas ---------------------------------------------------------------------------


@functools.cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads(_schema_text(name))


@functools.cache
def _schema_text(name: str) -> str:
    return (SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8")


def _valid_cache() -> ValidCache:
    return ValidCache(Home.from_env().root / "cache" / "valid-settings")


@functools.cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    definitions = _schema("definitions")
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    return Draft202012Validator(_schema(name), registry=registry)


@functools.cache
def _integer_keys() -> frozenset[str]:
    return frozenset(path for path, schema in _leaf_schemas().items()
                     if "integer" in schema.get("type", ()))


@functools.cache
def _leaf_schemas() -> dict[str, dict[str, Any]]:
    """Dotted key -> its schema, read from the user schema (which has every key)."""
    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = _schema("definitions")["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node

    leaves = {}
    for key, node in _schema("user")["properties"].items():
        node = resolve(node)
        if node.get("type") == "object":
            children = node["properties"].items()
            leaves.update({f"{key}.{sub}": resolve(child) for sub, child in children})
        else:
            leaves[key] = node
    return leaves
