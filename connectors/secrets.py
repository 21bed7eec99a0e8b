"""Credentials at rest: Fernet tokens, keys from settings (newest first, for rotation)."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.HUB_ENCRYPTION_KEYS)
    if not keys:
        # Development default: derived from SECRET_KEY so a fresh checkout works.
        digest = hashlib.sha256(f"hub-credentials:{settings.SECRET_KEY}".encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(values: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise ImproperlyConfigured(
            "connection credentials cannot be decrypted with HUB_ENCRYPTION_KEYS"
        ) from None


def reencrypt(token: str) -> str:
    """``token`` re-encrypted with the newest key (MultiFernet.rotate); the keys after
    the first are only ever used to read, so once every token is rotated they can go."""
    if not token:
        return token
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "connection credentials cannot be decrypted with HUB_ENCRYPTION_KEYS"
        ) from None


def keys_reload() -> None:
    """Forget the cached keys (after HUB_ENCRYPTION_KEYS changed in this process)."""
    _fernet.cache_clear()


def mask(value: Any) -> str:
    text = str(value)
    return "••••" + text[-4:] if len(text) > 8 else "••••"
