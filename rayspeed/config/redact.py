"""Removes secrets from anything rayspeed writes or logs (saved configs, W&B config, messages)."""

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from rayspeed.errors import ConfigError

# Anywhere in a key (`aws_secret_access_key`, `dbPassword`, `authtoken`), but `token` not as the start of
# `tokenizer` (data.text.tokenizer names a file, and a run's saved config must load back).
SECRET_KEY = re.compile(r"(secret|token(?!iz)|password|passwd|api[_-]?key|access[_-]?key|credential|"
                        r"session[_-]?key|signature|\bsig\b)", re.IGNORECASE)
REDACTED = "<redacted>"
# A URI's user:password@ (the password may hold a raw `/`, as AWS secret keys do) or user@.
USERINFO = re.compile(r"://([^\s'\"@/?#]*:[^\s'\"@?#]*|[^\s'\"@/?#:]+)@")
QUERY_PARAMETER = re.compile(r"([?&;])([^=&;#?\s'\"]+)=([^&;#\s'\"]*)")
# Experiment sections whose keys the user chooses (so a key may name a secret); typed fields never hold one.
FREE_FORM = ("deepspeed.", "model.args.")


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` with secret-looking keys blanked and credentials stripped out of URIs."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return REDACTED if SECRET_KEY.search(key) else redact_uri(value)
    return value


def redact_uri(text: str) -> str:
    """`text` with the credentials of every URI in it blanked: `s3://AKIA:pw@bucket/x?secret_key=..` ->
    `s3://<redacted>@bucket/x?secret_key=<redacted>`; everything else is kept as written."""
    text = USERINFO.sub(f"://{REDACTED}@", text)
    return QUERY_PARAMETER.sub(
        lambda found: f"{found[1]}{found[2]}={REDACTED}" if SECRET_KEY.search(unquote(found[2])) else found[0], text)


def refuse_credentials(values: dict, *, exposed: str) -> None:
    """Raises ConfigError naming every field of `values` (an experiment as JSON) that carries credentials;
    `exposed` says who would see them and where they belong instead."""
    if leaked := credential_fields(values):
        raise ConfigError([f"{path}: carries credentials, {exposed}" for path in leaked])


def credential_fields(values: dict) -> list[str]:
    """Paths of URIs with credentials in them (user:password@, ?secret_key=) anywhere, and of
    secret-looking keys (api_key, token, ...) in the free-form sections."""
    return [path for path, key, value in _leaves(values, path="", key="") if isinstance(value, str) and (
        redact_uri(value) != value or (path.startswith(FREE_FORM) and redact(value, key) != value))]


def _leaves(value, *, path: str, key: str) -> Iterator[tuple[str, str, object]]:
    """(dotted path, the key it is under, value) of every scalar; list items keep their list's key."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _leaves(item, path=f"{path}.{name}".lstrip("."), key=str(name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, path=f"{path}[{i}]", key=key)
    else:
        yield path, key, value
