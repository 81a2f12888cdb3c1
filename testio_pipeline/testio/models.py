"""Typed records of the TestIO Customer API v2.

Every record keeps the object it was built from in ``raw`` (with test-environment
credentials removed), so nothing the API sends is lost even when we do not model it.
Enum-like fields (status, severity) are plain strings: unknown values are kept as they
came and flagged by the ``*_known`` properties rather than rejected.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import to_json

TEST_STATUSES = (
    "initialized",
    "customer_finalized",
    "waiting",
    "running",
    "locked",
    "archived",
    "cancelled",
)
FINAL_TEST_STATUSES = frozenset({"archived", "cancelled"})
BUG_SEVERITIES = ("critical", "high", "low", "visual", "content", "custom")
BUG_STATUSES = ("accepted", "rejected", "forwarded")
TESTING_TYPES = ("coverage", "focused", "rapid", "usability", "external")

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


_CREDENTIAL_MARKER = b'"test_environment"'
_CREDENTIAL_KEY_MARKERS = tuple(f'"{key}"'.encode() for key in sorted(CREDENTIAL_KEYS))


def raw_text(obj: Any) -> bytes:
    """``obj`` as compact JSON text (UTF-8) without test-environment credentials.

    Keys keep the API's order (pydantic-core's Rust serializer, ~5x faster than
    ``json.dumps(sort_keys=True)``); the API sends keys in a stable order, so equal content
    gives equal text and an equal hash. A key ``"test_environment"`` always appears in the
    text with its quotes (a string value holding them would be escaped), so only objects
    that contain one pay for the stripping copy.
    """
    text = to_json(obj, inf_nan_mode="null", fallback=str)
    if _CREDENTIAL_MARKER in text:
        text = to_json(strip_credentials(obj), inf_nan_mode="null", fallback=str)
    return text


def _clean_and_text(data: Any) -> tuple[dict[str, Any], bytes]:
    """The API object without credentials, and its JSON text (serialised once)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    text = to_json(data, inf_nan_mode="null", fallback=str)
    if _CREDENTIAL_MARKER in text and any(key in text for key in _CREDENTIAL_KEY_MARKERS):
        # The usual shape (a test): the text names one environment, the object's own.
        data = strip_credentials(data, only_at_top=text.count(_CREDENTIAL_MARKER) == 1)
        text = to_json(data, inf_nan_mode="null", fallback=str)
    return data, text


class Record(BaseModel):
    """A typed API object; the object itself is kept as its JSON text in ``raw_json``.

    The text is computed once while parsing (credentials removed) and is what the warehouse
    stores and hashes, so a record holds no second tree of Python objects. ``raw`` parses it
    on demand (a new dict each time).
    """

    model_config = ConfigDict(extra="ignore", frozen=False)

    raw_json: bytes = Field(default=b"{}", repr=False, exclude=True)

    @property
    def raw(self) -> dict[str, Any]:
        """The API object (credentials removed), parsed from ``raw_json``."""
        return json.loads(self.raw_json)

    @classmethod
    def from_api(cls, data: dict[str, Any], **context: Any) -> "Record":
        """Build a record from one API object; ``context`` adds what the envelope implies."""
        clean, text = _clean_and_text(data)
        return cls.model_validate({**clean, **context, "raw_json": text})


class Section(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    name: str | None = None


class Product(Record):
    id: int
    name: str
    type: str | None = None
    description: str | None = None
    default_section_id: int | None = None
    sections: list[Section] = Field(default_factory=list)
    sections_with_default: list[Section] = Field(default_factory=list)

    @field_validator("sections", "sections_with_default", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def has_sections(self) -> bool:
        """A single default section means "no sections" (see TESTIO_API.md)."""
        return bool(self.sections) or len(self.sections_with_default) > 1

    @property
    def section_list(self) -> list[Section]:
        if not self.has_sections:
            return []
        return self.sections or self.sections_with_default

    @property
    def section_ids(self) -> list[int]:
        return [s.id for s in self.section_list]


class Feature(Record):
    id: int
    product_id: int
    title: str
    description: str | None = None
    howtofind: str | None = None
    user_stories: list[str] = Field(default_factory=list)
    # Filled by the client: every section whose feature list named this feature.
    section_ids: list[int] = Field(default_factory=list)

    @field_validator("user_stories", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class UserStory(Record):
    id: int
    product_id: int
    section_id: int | None = None
    title: str
    path: str | None = None


class Environment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | None = None
    title: str | None = None
    url: str | None = None


class CoveredFeature(BaseModel):
    """A feature as listed on a test: ``id`` is the test-feature id, ``feature_id`` the product's."""

    model_config = ConfigDict(extra="ignore")

    id: int
    feature_id: int | None = None
    title: str | None = None
    user_stories: list[Any] = Field(default_factory=list)
    enable_default: bool | None = None
    enable_content: bool | None = None
    enable_visual: bool | None = None

    @field_validator("user_stories", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class ExploratoryTest(Record):
    id: int
    product_id: int
    title: str | None = None
    status: str
    review_status: str | None = None
    testing_type: str | None = None
    goal: str | None = None
    instructions: str | None = None
    out_of_scope: str | None = None
    enable_low: bool | None = None
    enable_high: bool | None = None
    enable_critical: bool | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    created_by: str | None = None
    submitted_by: str | None = None
    section_id: int | None = None
    section_name: str | None = None
    test_environment: Environment | None = None
    features: list[CoveredFeature] = Field(default_factory=list)

    @classmethod
    def from_api(cls, data: dict[str, Any], **context: Any) -> "ExploratoryTest":
        clean, text = _clean_and_text(data)
        section = clean.get("section") or {}
        product = clean.get("product") or {}
        merged = {
            **clean,
            "title": clean.get("title") or clean.get("test_title"),
            "goal": clean.get("goal") or clean.get("goal_text"),
            "instructions": clean.get("instructions") or clean.get("instructions_text"),
            "out_of_scope": clean.get("out_of_scope") or clean.get("out_of_scope_text"),
            "section_id": section.get("id") if isinstance(section, dict) else None,
            "section_name": section.get("name") if isinstance(section, dict) else None,
            **context,
            "raw_json": text,
        }
        if "product_id" not in context and isinstance(product, dict) and "id" in product:
            merged["product_id"] = product["id"]
        return cls.model_validate(merged)

    @field_validator("features", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_TEST_STATUSES

    @property
    def status_known(self) -> bool:
        return self.status in TEST_STATUSES


class Bug(Record):
    id: int
    product_id: int | None = None
    test_id: int
    title: str | None = None
    severity: str | None = None
    status: str | None = None
    auto_accepted: bool | None = None
    known: bool | None = None
    steps: list[str] = Field(default_factory=list)
    actual_result: str | None = None
    expected_result: str | None = None
    reported_at: datetime | None = None
    exported_at: datetime | None = None
    author_name: str | None = None
    test_feature_id: int | None = None
    feature_id: int | None = None
    language: str | None = None
    location: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any], **context: Any) -> "Bug":
        clean, text = _clean_and_text(data)
        test = clean.get("test")
        if not isinstance(test, dict) or test.get("id") is None:
            raise ValueError("bug has no test.id, so it cannot be attached to a test")
        author = clean.get("author") if isinstance(clean.get("author"), dict) else {}
        test_feature = clean.get("test_feature") if isinstance(clean.get("test_feature"), dict) else {}
        feature = clean.get("feature") if isinstance(clean.get("feature"), dict) else {}
        merged = {
            **clean,
            "test_id": test["id"],
            "author_name": author.get("name"),
            "test_feature_id": test_feature.get("id"),
            "feature_id": feature.get("id"),
            **context,
            "raw_json": text,
        }
        return cls.model_validate(merged)

    @field_validator("steps", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def severity_known(self) -> bool:
        return self.severity in BUG_SEVERITIES

    @property
    def status_known(self) -> bool:
        return self.status in BUG_STATUSES


class RejectedRecord(BaseModel):
    """An API object that could not be typed; kept with the reason instead of being dropped."""

    entity: str
    product_id: int | None = None
    record_id: str | None = None
    reason: str
    raw: Any = None
