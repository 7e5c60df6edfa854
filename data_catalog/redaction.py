"""Credentials never reach a log line, an error message or a file.

Secrets come from two places: ``user:password@`` in a store URL, and the values of secret-looking keys
(``key``, ``secret``, ``token``, ``password``, ``Authorization`` …) in a store's ``storage_options``.
Every :class:`~data_catalog.catalog.StoreRef` registers its secrets here when it is created;
:func:`redact` masks them, any ``user:password@`` and any ``Authorization`` header value in a text, and
:func:`install_log_redaction` applies :func:`redact` to every log record the process makes, third-party
loggers included (fsspec and aiohttp log full URLs at DEBUG), before any handler sees it.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"

_CREDENTIAL_IN_URL = re.compile(r"(?P<scheme>[a-z0-9+.-]+://)[^/@\s'\"]+@", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?P<key>['\"]?(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+", re.IGNORECASE)
_SECRET_KEY = re.compile(r"key|secret|token|passw|auth|credential|signature", re.IGNORECASE)
#: Shorter values are not masked in free text (they would mask common words); URLs are masked anyway.
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_lock = threading.Lock()


def redact_url(url: str) -> str:
    """``url`` with any ``user:secret@`` part replaced by ``***@``."""
    return _CREDENTIAL_IN_URL.sub(lambda m: m.group("scheme") + MASK + "@", url)


def url_credentials(url: str) -> list[str]:
    """The secrets of a URL's ``user:password@`` part: the password, ``user:password`` (raw and
    percent-decoded) and its HTTP Basic form (base64); empty without one."""
    m = re.match(r"[a-z0-9+.-]+://(?P<cred>[^/@\s]+)@", url, re.IGNORECASE)
    if not m:
        return []
    out = []
    for cred in {m.group("cred"), unquote(m.group("cred"))}:
        _, _, password = cred.partition(":")
        out += [cred, password, base64.b64encode(cred.encode()).decode()]
    return [s for s in out if s]


def option_secrets(options: Mapping[str, Any]) -> list[str]:
    """String values under secret-looking keys of ``storage_options`` (nested mappings and lists included)."""
    found: list[str] = []

    def walk(obj: Any, secret: bool) -> None:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(v, secret or bool(_SECRET_KEY.search(str(k))))
        elif isinstance(obj, list | tuple):
            for v in obj:
                walk(v, secret)
        elif secret and isinstance(obj, str):
            found.append(obj)

    walk(options, False)
    return found


def register_secrets(values: Iterable[str]) -> None:
    """Mask these strings in every later :func:`redact` (process-wide; values shorter than
    :data:`MIN_SECRET_LENGTH` are ignored)."""
    with _lock:
        _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


def redact(text: str) -> str:
    """``text`` without URL credentials, ``Authorization`` header values or any registered secret."""
    text = _AUTH_HEADER.sub(lambda m: m.group("key") + MASK, redact_url(text))
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # a secret that contains another goes first
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with its message, formatted traceback and stack redacted (:func:`redact`), in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed call: left for the handler to report, never raised here
        return record
    record.msg, record.args = redact(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = _FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_FORMATTER = logging.Formatter()


class _RedactingFactory:
    """A log record factory that redacts each record it makes (:func:`logging.setLogRecordFactory`)."""

    def __init__(self, base: Callable[..., logging.LogRecord]):
        self.base = base

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(self.base(*args, **kwargs))


def install_log_redaction() -> None:
    """Redact every log record of this process from now on, whatever its logger, level or handler (the
    record factory is wrapped once; idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))
