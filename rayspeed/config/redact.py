"""Removes secrets from anything rayspeed writes or logs (saved configs, W&B config, messages)."""

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Whole words of a key (`aws_secret_access_key`, `apiKey`), so `tokenizer` or `max_tokens` stay readable.
SECRET_KEY = re.compile(r"(?:^|[_-])(secrets?|tokens?|password|passwd|api[_-]?key|access[_-]?key|credentials?|"
                        r"session[_-]?key)(?:$|[_-])", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` with secret-looking keys blanked and credentials stripped out of URIs."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return REDACTED if is_secret_key(key) else redact_uri(value)
    return value


def redact_uri(text: str) -> str:
    """`s3://AKIA:pw@bucket/x?secret_key=..` -> `s3://<redacted>@bucket/x?secret_key=<redacted>`."""
    if "://" not in text:
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in parse_qsl(parts.query)],
                      safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)))
