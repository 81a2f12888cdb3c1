"""Turning API bodies into typed records: envelopes unwrapped, every object typed or kept aside.

Shared by the endpoint methods (``client.py``), the test-list reader (``paging.py``) and the
bug reader (``bugs.py``). A record that does not fit its model is never dropped silently: it
becomes a ``RejectedRecord`` with the reason and its raw object, credentials stripped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from ..domain.credentials import strip_credentials
from ..domain.records import Record, RejectedRecord
from .errors import MalformedResponseError

R = TypeVar("R", bound=Record)


@dataclass
class Parsed:
    """Records that could be typed, and the ones that could not (kept, with the reason)."""

    records: list[Any] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)


def parse_records(model: type[R], items: Any, *, entity: str, **context: Any) -> Parsed:
    """Type each API object; anything that does not fit goes to ``rejected`` with its reason.

    ``context`` holds what the request implies but the objects do not carry (product_id,
    section_id).
    """
    parsed = Parsed()
    product_id = context.get("product_id")
    if not isinstance(items, list):
        raise MalformedResponseError(f"expected a list of {entity}, got {type(items).__name__}")
    for item in items:
        try:
            parsed.records.append(model.from_api(item, **context))
        except (ValidationError, ValueError, TypeError) as exc:
            parsed.rejected.append(
                RejectedRecord(
                    entity=entity,
                    product_id=product_id,
                    record_id=str(item.get("id")) if isinstance(item, dict) and "id" in item else None,
                    reason=_short_reason(exc),
                    raw=strip_credentials(item),
                )
            )
    return parsed


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}" for err in exc.errors()[:5]
        )
    return str(exc)


def envelope(data: Any, key: str, path: str) -> Any:
    """The value under the response's one envelope key (``{"products": [...]}``)."""
    if not isinstance(data, dict) or key not in data:
        found = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise MalformedResponseError(f"GET {path}: expected a {{{key!r}: ...}} envelope, got {found}")
    return data[key]
