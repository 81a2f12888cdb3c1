"""Credential scrubbing: the customer's test-environment credentials and the API token never
leave the client in clear text, so nothing downstream (warehouse, logs, metadata) can hold them."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import to_json

REDACTED = "***"

# Keys inside ``test_environment`` that hold the customer's test-environment credentials.
CREDENTIAL_KEYS = frozenset({"username", "password", "access"})


def strip_credentials(obj: Any, *, only_at_top: bool = False) -> Any:
    """``obj`` without credentials in any ``test_environment``; the input is never modified.

    Only the containers on the way to a credential are copied: most API objects (bugs,
    features) hold none and come back as they are, which keeps parsing cheap. With
    ``only_at_top`` the caller knows ``obj``'s own ``test_environment`` is the only one (its
    JSON text names one), so the rest of the tree is not walked.
    """
    if only_at_top and isinstance(obj, dict) and isinstance(obj.get("test_environment"), dict):
        env = obj["test_environment"]
        return {**obj, "test_environment": {k: v for k, v in env.items() if k not in CREDENTIAL_KEYS}}
    if isinstance(obj, dict):
        changed: dict[str, Any] | None = None
        for key, value in obj.items():
            if key == "test_environment" and isinstance(value, dict) and CREDENTIAL_KEYS & value.keys():
                clean = {k: v for k, v in value.items() if k not in CREDENTIAL_KEYS}
                clean = strip_credentials(clean)
            elif isinstance(value, (dict, list)):
                clean = strip_credentials(value)
            else:  # a scalar holds no credentials: no call, no copy
                continue
            if clean is not value:
                if changed is None:
                    changed = dict(obj)
                changed[key] = clean
        return obj if changed is None else changed
    if isinstance(obj, list):
        items = [strip_credentials(item) for item in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else items
    return obj


CREDENTIAL_MARKER = b'"test_environment"'
CREDENTIAL_KEY_MARKERS = tuple(f'"{key}"'.encode() for key in sorted(CREDENTIAL_KEYS))


def raw_text(obj: Any) -> bytes:
    """``obj`` as compact JSON text (UTF-8) without test-environment credentials.

    Keys keep the API's order (pydantic-core's Rust serializer, ~5x faster than
    ``json.dumps(sort_keys=True)``); the API sends keys in a stable order, so equal content
    gives equal text and an equal hash. A key ``"test_environment"`` always appears in the
    text with its quotes (a string value holding them would be escaped), so only objects
    that contain one pay for the stripping copy.
    """
    text = to_json(obj, inf_nan_mode="null", fallback=str)
    if CREDENTIAL_MARKER in text:
        text = to_json(strip_credentials(obj), inf_nan_mode="null", fallback=str)
    return text


def clean_and_text(data: Any) -> tuple[dict[str, Any], bytes]:
    """The API object without credentials, and its JSON text (serialised once)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    text = to_json(data, inf_nan_mode="null", fallback=str)
    if CREDENTIAL_MARKER in text and any(key in text for key in CREDENTIAL_KEY_MARKERS):
        # The usual shape (a test): the text names one environment, the object's own.
        data = strip_credentials(data, only_at_top=text.count(CREDENTIAL_MARKER) == 1)
        text = to_json(data, inf_nan_mode="null", fallback=str)
    return data, text



# A test_environment object holding a credential key, anywhere in a JSON text (SQL regex).
CREDENTIAL_PATTERN = r'"test_environment"\s*:\s*\{[^{}]*"(username|password|access)"\s*:'

_TOKEN_HEADER = re.compile(r"(Token\s+)[^\s'\"]+", re.IGNORECASE)


def redact(text: str, *secrets: str | None) -> str:
    """Remove every given secret (and anything after an ``Authorization: Token``) from text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _TOKEN_HEADER.sub(rf"\g<1>{REDACTED}", text)


def scrub_text(text: bytes) -> bytes:
    """A JSON text without credentials: only texts naming a test_environment key pay for it.
    The warehouse applies it again to what it stores, as defence in depth."""
    if CREDENTIAL_MARKER not in text or not any(key in text for key in CREDENTIAL_KEY_MARKERS):
        return text
    return to_json(strip_credentials(json.loads(text)), inf_nan_mode="null", fallback=str)
