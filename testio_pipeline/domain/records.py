"""Typed records of the TestIO Customer API v2.

Every record keeps the object it was built from in ``raw`` (with test-environment
credentials removed), so nothing the API sends is lost even when we do not model it.
Enum-like fields (status, severity) are plain strings: unknown values are kept as they
came and flagged by the ``*_known`` properties rather than rejected.

Every shape of a field that TestIO documents or sends is accepted and normalised to the
one column type (docs/operations.md, "Shapes the API sends"); only what cannot be typed is rejected,
with a reason naming the field. Most of it is pydantic's own (lax) coercion, done in Rust:
an id as a numeric string (``"123"`` -> 123), a boolean as null, a number where a string
is expected (``coerce_numbers_to_str``), an optional object as null (``AliasPath`` reads
``test.id``, ``author.name``... and finds nothing in a null). The reusable types below add
a Python step only where pydantic has none: a list sent as null, ``steps`` sent as one
string, an empty string for a missing date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import AliasChoices, AliasPath, BaseModel, BeforeValidator, ConfigDict, Field

from .credentials import clean_and_text, raw_text

T = TypeVar("T")


def _empty_if_none(value: Any) -> Any:
    return [] if value is None else value


def _steps(value: Any) -> Any:
    """A bug's steps: a list of strings (the deployed API), or one string (the API
    description): one step per line (surrounding spaces trimmed), blank lines dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        return [step for step in (line.strip() for line in value.splitlines()) if step]
    return value


def _none_if_blank(value: Any) -> Any:
    """An empty (or blank) string stands for a missing value."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


# A list the API may send as null: stored as an empty list.
EmptyIfNone = Annotated[list[T], BeforeValidator(_empty_if_none)]
# A bug's steps: list of strings, one string (split on line breaks, blank lines dropped) or null.
Steps = Annotated[list[str], BeforeValidator(_steps)]
# A moment (ISO 8601, or epoch seconds); null or "" is a missing moment. Anything else that
# is not a date is rejected.
Timestamp = Annotated[datetime | None, BeforeValidator(_none_if_blank)]
# Ids: integers, or numeric strings (pydantic's lax mode: "123" and " 123 " -> 123). A
# non-numeric id is rejected.
Id = int
OptionalId = int | None
# Free text: a number is taken as its text (coerce_numbers_to_str); lists and objects are rejected.
Text = str | None
# Booleans may come as null (unknown); "true"/"false"/0/1 are read by pydantic's lax mode.
Flag = bool | None

# Shared by every model: unknown keys ignored, numbers accepted where text is expected, and
# fields read through an alias (``test.id``) may also be given by their name.
MODEL_CONFIG = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)


def nested(*path: str | int) -> Any:
    """Where a field is read from inside an optional object (``nested("test", "id")``): a
    missing or null object reads as a missing field (its default), not as an error, and an
    error names the path (``test.id``)."""
    return AliasPath(*path)


def raw_id(item: Any) -> int | None:
    """The id of a raw API object (an int or a numeric string) as an int, else None.

    For code that looks at API objects before they are typed (list positions, known ids);
    the records themselves get their ids from pydantic, which reads the same shapes.
    """
    value = item.get("id") if isinstance(item, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    return None


class Record(BaseModel):
    """A typed API object; the object itself is kept as its JSON text in ``raw_json``.

    The text is computed once while parsing (credentials removed) and is what the warehouse
    stores and hashes, so a record holds no second tree of Python objects. ``raw`` parses it
    on demand (a new dict each time).
    """

    model_config = MODEL_CONFIG

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

    @property
    def derived_content(self) -> str:
        """What counts as content besides ``raw_json``: the context the client added."""
        return ""

    def merged_with(self, earlier: "Record") -> "Record":
        """This record, seen again after ``earlier`` (same id) in one write: the later one wins."""
        return self


class Section(BaseModel):
    model_config = MODEL_CONFIG

    id: Id
    name: Text = None


class Product(Record):
    id: Id
    name: str
    type: Text = None
    description: Text = None
    default_section_id: OptionalId = None
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

    def section_rows(self) -> list[dict[str, Any]]:
        return [{"id": s.id, "name": s.name} for s in self.section_list]


class Feature(Record):
    id: Id
    product_id: Id
    title: str
    description: Text = None
    howtofind: Text = None
    user_stories: EmptyIfNone[str] = Field(default_factory=list)
    # Filled by the client: every section whose feature list named this feature.
    section_ids: list[int] = Field(default_factory=list)

    @property
    def user_story_titles(self) -> list[str]:
        return self.user_stories

    @property
    def derived_content(self) -> str:
        return f"{self.product_id}|{sorted(set(self.section_ids))}"

    def merged_with(self, earlier: Record) -> "Feature":
        """A feature listed under several sections keeps all of them."""
        if isinstance(earlier, Feature) and set(earlier.section_ids) - set(self.section_ids):
            return self.model_copy(update={"section_ids": sorted(set(earlier.section_ids) | set(self.section_ids))})
        return self

    def section_rows(self) -> list[dict[str, Any]]:
        return [{"section_id": sid, "product_id": self.product_id} for sid in sorted(set(self.section_ids))]


class UserStory(Record):
    id: Id
    product_id: Id
    section_id: OptionalId = None
    title: str
    path: Text = None

    @property
    def derived_content(self) -> str:
        return f"{self.product_id}|{self.section_id}"


class Environment(BaseModel):
    model_config = MODEL_CONFIG

    id: OptionalId = None
    title: Text = None
    url: Text = None


class CoveredFeature(BaseModel):
    """A feature as listed on a test: ``id`` is the test-feature id, ``feature_id`` the product's."""

    model_config = MODEL_CONFIG

    id: Id
    feature_id: OptionalId = None
    title: Text = None
    user_stories: EmptyIfNone[Any] = Field(default_factory=list)
    enable_default: Flag = None
    enable_content: Flag = None
    enable_visual: Flag = None


# A test's fields that come under two names (Markdown and plain text, or the description's
# name and the deployed one): the first non-empty one wins.
TEST_FIELD_PAIRS = (
    ("title", "test_title"),
    ("goal", "goal_text"),
    ("instructions", "instructions_text"),
    ("out_of_scope", "out_of_scope_text"),
)


# Nested lists of tests and bugs (requirements, devices, comments) are kept as the API sent
# them and read by the *_rows methods below with plain dict lookups: typing each nested
# object as a model made a bug's parsing several times slower (benchmarks/README.md), and
# only the few fields the child tables hold are needed.
JsonList = Annotated[list[Any], BeforeValidator(lambda value: value if isinstance(value, list) else [])]


def _text(value: Any) -> str | None:
    """A name or text as the API sent it; a number is taken as its text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _name(obj: Any) -> str | None:
    """``obj["name"]`` of an ``{id, name}`` object (None when it is null or not an object)."""
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    # The usual case answered at once: the child tables read a few names per bug.
    return name if name is None or type(name) is str else _text(name)


def _names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    names = [_name(i) for i in items]
    return names if None not in names else [n for n in names if n is not None]


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    return None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def _as_text(value: Any) -> str | None:
    """A report field's value as text: strings as they are, anything else as its JSON."""
    if value is None or isinstance(value, str):
        return value
    return raw_text(value).decode()


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)]


class ExploratoryTest(Record):
    id: Id
    # The list's product (context), else the embedded ``product.id``.
    product_id: Id = Field(validation_alias=AliasChoices("product_id", nested("product", "id")))
    title: Text = None
    status: str
    review_status: Text = None
    testing_type: Text = None
    goal: Text = None
    instructions: Text = None
    out_of_scope: Text = None
    enable_low: Flag = None
    enable_high: Flag = None
    enable_critical: Flag = None
    start_at: Timestamp = None
    end_at: Timestamp = None
    created_by: Text = None
    submitted_by: Text = None
    section_id: OptionalId = Field(None, validation_alias=nested("section", "id"))
    section_name: Text = Field(None, validation_alias=nested("section", "name"))
    test_environment: Environment | None = None
    features: EmptyIfNone[CoveredFeature] = Field(default_factory=list)
    requirements: JsonList = Field(default_factory=list)

    @property
    def test_environment_id(self) -> int | None:
        return self.test_environment.id if self.test_environment else None

    @property
    def test_environment_title(self) -> str | None:
        return self.test_environment.title if self.test_environment else None

    @property
    def test_environment_url(self) -> str | None:
        return self.test_environment.url if self.test_environment else None

    @property
    def derived_content(self) -> str:
        return str(self.product_id)

    def feature_rows(self) -> list[dict[str, Any]]:
        """The features covered, with the kinds of bugs allowed on each."""
        return [
            {
                "id": f.id,
                "feature_id": f.feature_id,
                "title": f.title,
                "enable_default": f.enable_default,
                "enable_content": f.enable_content,
                "enable_visual": f.enable_visual,
            }
            for f in self.features
        ]

    def platform_rows(self) -> list[dict[str, Any]]:
        """Category, operating system, min and max version and browsers, per requirement."""
        return [
            {
                "category": _name(r.get("category")),
                "operating_system": _name(r.get("operating_system")),
                "min_os_version": _name(r.get("min_operating_system_version")),
                "max_os_version": _name(r.get("max_operating_system_version")),
                "browsers": _names(r.get("browsers")),
            }
            for r in _objects(self.requirements)
        ]

    @classmethod
    def from_api(cls, data: dict[str, Any], **context: Any) -> "ExploratoryTest":
        clean, text = clean_and_text(data)
        merged = {**clean, **context, "raw_json": text}
        for name, other in TEST_FIELD_PAIRS:
            merged[name] = clean.get(name) or clean.get(other)
        return cls.model_validate(merged)


class Bug(Record):
    id: Id
    product_id: OptionalId = None
    # A bug belongs to a test through ``test.id``: without one it cannot be typed.
    test_id: Id = Field(validation_alias=nested("test", "id"))
    title: Text = None
    severity: Text = None
    # The API description's older bug has no status, auto_accepted or reported_at.
    status: Text = None
    auto_accepted: Flag = None
    known: Flag = None
    steps: Steps = Field(default_factory=list)
    actual_result: Text = None
    expected_result: Text = None
    reported_at: Timestamp = None
    exported_at: Timestamp = None
    author_name: Text = Field(None, validation_alias=nested("author", "name"))
    test_feature_id: OptionalId = Field(None, validation_alias=nested("test_feature", "id"))
    feature_id: OptionalId = Field(None, validation_alias=nested("feature", "id"))
    language: Text = None
    location: Text = None
    devices: JsonList = Field(default_factory=list)
    comments: JsonList = Field(default_factory=list)
    report: Any = None

    @property
    def derived_content(self) -> str:
        return str(self.product_id)

    def device_rows(self) -> list[dict[str, Any]]:
        """Category, operating system, OS version, device, vendor and browser: one row per device
        and browser of that device, or one with browser None when it lists none. ``devices`` (the
        model) is one object as documented; a list of them is read as their names joined."""
        rows = []
        for d in self.devices:
            if not isinstance(d, dict):
                continue
            model = d.get("devices")
            device = (", ".join(_names(model)) or None) if isinstance(model, list) else _name(model)
            category = _name(d.get("category"))
            operating_system = _name(d.get("operating_system"))
            os_version = _name(d.get("operating_system_version"))
            vendor = _name(d.get("vendor"))
            for browser in _names(d.get("browsers")) or (None,):
                rows.append(
                    {
                        "category": category,
                        "operating_system": operating_system,
                        "os_version": os_version,
                        "device": device,
                        "vendor": vendor,
                        "browser": browser,
                    }
                )
        return rows

    def comment_rows(self) -> list[dict[str, Any]]:
        """Comment id, author name, body and created_at per comment, in the API's order."""
        return [
            {
                "comment_id": _int(c.get("id")),
                "author_name": _name(c.get("author")),
                "body": _text(c.get("body")),
                "created_at": _moment(c.get("created_at")),
            }
            for c in _objects(self.comments)
        ]

    def report_rows(self) -> list[dict[str, Any]]:
        """Configuration id, key and value (as text) per custom report field (``report.content.data``)."""
        if not isinstance(self.report, dict):
            return []
        content = self.report.get("content")
        data = content.get("data") if isinstance(content, dict) else None
        config = _int(self.report.get("custom_report_configuration_id"))
        return [
            {"configuration_id": config, "key": _text(f.get("key")), "value": _as_text(f.get("value"))}
            for f in _objects(data if isinstance(data, list) else [])
        ]


@dataclass(frozen=True)
class RejectReason:
    """One of the customer's rejection reasons (``bugs/reject_reasons``): TestIO posts its
    ``default_comment`` on a bug rejected for it. ``source`` says where it came from: ``api``,
    or ``standard`` (TestIO's standard list, for what the API did not list)."""

    key: str
    name: str | None
    default_comment: str
    source: str = "api"


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
