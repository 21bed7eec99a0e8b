"""Structured logs: every line carries the business transaction id when one is bound.

Code binds it with ``structlog.contextvars.bound_contextvars(txn=...)``; stdlib log
records (Django, Celery) go through the same processors, the last of which is
``redact``: credentials never reach a log line, and no value is longer than
``MAX_VALUE_CHARS`` (tracebacks excepted: they stay in the logs, not in API answers).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import structlog

MAX_VALUE_CHARS = 2000
MASK = "[redacted]"
# Keys that hold credentials whatever the connector; connectors add their declared
# ``secret_fields`` (read from the registry when a line is logged).
_SECRET_KEY = re.compile(r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|authorization|cookie|credential|signature)")
# Credentials that travel inside free text (error messages, reprs of requests).
_SECRET_TEXT = [
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{6,}"), r"\1_\2_" + MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9]{6,}"), "whsec_" + MASK),
    (re.compile(r"(?i)\b(password|passwd|secret|api_key|access_token|token)(['\"]?\s*[:=]\s*['\"]?)[^\s,'\"}]+"), r"\1\2" + MASK),
]
# People's e-mail addresses in messages: keep the domain, which is what debugging needs.
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")
_UNTOUCHED = frozenset({"exc_info", "exception", "stack", "timestamp", "level", "logger", "_record", "_from_structlog"})


def _declared_secret_fields() -> frozenset[str]:
    try:
        from connectors import registry
    except Exception:  # noqa: BLE001 - logging must work before Django is set up
        return frozenset()
    return registry.declared_secret_fields()


def redact_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    text = _EMAIL.sub(r"\1***@\2", text)
    if len(text) > MAX_VALUE_CHARS:
        text = f"{text[:MAX_VALUE_CHARS]}… [{len(text) - MAX_VALUE_CHARS} more characters]"
    return text


def _redact_value(key: str, value: Any, secret_fields: frozenset[str], depth: int = 0) -> Any:
    if isinstance(key, str) and (_SECRET_KEY.search(key) or key.lower() in secret_fields):
        return MASK
    if depth > 5:
        return "…"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(k, v, secret_fields, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v, secret_fields, depth + 1) for v in value[:100]]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(repr(value))


def redact(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask credential-named keys (and every connector's declared
    ``secret_fields``), credentials and e-mail addresses inside text, and bound lengths."""
    secret_fields = _declared_secret_fields()
    return {
        key: value if key in _UNTOUCHED else _redact_value(key, value, secret_fields)
        for key, value in event_dict.items()
    }


_shared = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact,
]

structlog.configure(
    processors=[*_shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def formatter(json: bool = False) -> logging.Formatter:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
