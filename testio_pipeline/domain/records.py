"""Typed records of the TestIO Customer API v2.

Every record keeps the object it was built from in ``raw`` (with test-environment
credentials removed), so nothing the API sends is lost even when we do not model it.
Enum-like fields (status, severity) are plain strings: unknown values are kept as they
came and flagged by the ``*_known`` properties rather than rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .credentials import clean_and_text

T = TypeVar("T")

# A list the API may send as null: stored as an empty list.
EmptyIfNone = Annotated[list[T], BeforeValidator(lambda value: [] if value is None else value)]


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
        clean, text = clean_and_text(data)
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
    sections: EmptyIfNone[Section] = Field(default_factory=list)
    sections_with_default: EmptyIfNone[Section] = Field(default_factory=list)

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
    user_stories: EmptyIfNone[str] = Field(default_factory=list)
    # Filled by the client: every section whose feature list named this feature.
    section_ids: list[int] = Field(default_factory=list)


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
    user_stories: EmptyIfNone[Any] = Field(default_factory=list)
    enable_default: bool | None = None
    enable_content: bool | None = None
    enable_visual: bool | None = None


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
    features: EmptyIfNone[CoveredFeature] = Field(default_factory=list)

    @classmethod
    def from_api(cls, data: dict[str, Any], **context: Any) -> "ExploratoryTest":
        clean, text = clean_and_text(data)
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


class Bug(Record):
    id: int
    product_id: int | None = None
    test_id: int
    title: str | None = None
    severity: str | None = None
    status: str | None = None
    auto_accepted: bool | None = None
    known: bool | None = None
    steps: EmptyIfNone[str] = Field(default_factory=list)
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
        clean, text = clean_and_text(data)
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


class RejectedRecord(BaseModel):
    """An API object that could not be typed; kept with the reason instead of being dropped."""

    entity: str
    product_id: int | None = None
    record_id: str | None = None
    reason: str
    raw: Any = None


@dataclass(frozen=True)
class ProblemRange:
    """List positions that could not be read even one at a time (a row of problematic_records).

    For a test list the range is 0-based offsets, inclusive; for a single test's bug list it
    is that test's id at both ends. Offsets shift as new tests arrive at the top of the list,
    so ``spot`` names the problem across runs: the test just after it, which stays.
    """

    product_id: int
    range_start: int
    range_end: int
    error: str
    neighbour_ids: tuple[int, ...] = ()
    spot: str = ""

    @classmethod
    def in_list(
        cls, product_id: int, start: int, end: int, error: str, before: int | None, after: int | None
    ) -> "ProblemRange":
        """Failing list positions between the tests ``before`` and ``after`` (None at an end)."""
        spot = "at the end of the list" if after is None else f"before test {after}"
        neighbours = tuple(n for n in (before, after) if n is not None)
        return cls(product_id, start, end, error, neighbours, spot)

    @classmethod
    def bug_list(cls, product_id: int, test_id: int, error: str) -> "ProblemRange":
        """One test's bug list that fails on its own."""
        return cls(product_id, test_id, test_id, error, spot=f"test {test_id}")

    @property
    def size(self) -> int:
        return self.range_end - self.range_start + 1
