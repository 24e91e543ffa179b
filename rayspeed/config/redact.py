"""Removes secrets from anything rayspeed writes or logs (saved configs, W&B config, messages)."""

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Anywhere in a key (`aws_secret_access_key`, `dbPassword`, `authtoken`), but `token` not as the start of
# `tokenizer` (data.text.tokenizer names a file, and a run's saved config must load back).
SECRET_KEY = re.compile(r"(secret|token(?!iz)|password|passwd|api[_-]?key|access[_-]?key|credential|session[_-]?key)",
                        re.IGNORECASE)
REDACTED = "<redacted>"


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
    """`s3://AKIA:pw@bucket/x?secret_key=..` -> `s3://<redacted>@bucket/x?secret_key=<redacted>`."""
    if "://" not in text:
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = urlencode([(k, REDACTED if SECRET_KEY.search(k) else v) for k, v in parse_qsl(parts.query)],
                      safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
