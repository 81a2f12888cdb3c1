"""The other shapes TestIO documents or sends, served for a share of the records.

``SimulatorConfig.shape_variants`` is the share of records (of every entity) sent in an
alternative shape: the API description's instead of the deployed API's (a bug's ``steps``
as one string, the older bug without ``status``/``auto_accepted``/``reported_at``, a test
with only one name of ``title``/``test_title``, ``goal``/``goal_text``...), or values in
another JSON type (ids as numeric strings, booleans as null, an empty string for a missing
date, a number where text is expected, optional objects as null). Which records, and which
variants of a record, is a pure function of the world's seed and the record's id, so a
record has the same shape on every endpoint and at every moment.

Variants are a wire format: ``Simulator`` applies them to the body it answers with, after
the faults (which see and corrupt the regular records, by their integer ids). The truth
(``Simulator.truth_*``) stays in the regular shape with the values a correct mirror ends up
with: identical for lossless variants, and with the information a variant does not send set
to null (a bug sent without ``status`` has status null in the truth).

Transforms never change a value they do not recognise (a corrupted record stays exactly as
wrong), and never modify the objects they are given: what they change is copied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Endpoint -> (envelope key, None for the bare object; the entity its records are).
ENDPOINT_ENTITIES: dict[str, tuple[str | None, str]] = {
    "products": ("products", "products"),
    "product": ("product", "products"),
    "features": ("features", "features"),
    "section_features": ("features", "features"),
    "user_stories": ("user_stories", "user_stories"),
    "user_story": (None, "user_stories"),
    "exploratory_tests": ("exploratory_tests", "tests"),
    "exploratory_test": ("exploratory_test", "tests"),
    "bugs": ("bugs", "bugs"),
}

Record = dict[str, Any]
Transform = Callable[[Record, int], None]  # (a shallow copy of the record to change, bits)


@dataclass(frozen=True)
class Variant:
    """One alternative shape: what is sent, and the truth's part of it (lossy variants)."""

    name: str
    wire: Transform
    truth: Transform | None = None  # None: the truth is the regular record (lossless)


# --- helpers: change a copy, only values of the regular type --------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id_to_str(obj: Any, *keys: str) -> Any:
    """``obj`` with the integer ``keys`` as numeric strings (a copy), or ``obj`` itself."""
    if not isinstance(obj, dict) or not any(_is_int(obj.get(k)) for k in keys):
        return obj
    return {**obj, **{k: str(obj[k]) for k in keys if _is_int(obj.get(k))}}


def _each(items: Any, change: Callable[[Any], Any]) -> Any:
    return [change(item) for item in items] if isinstance(items, list) else items


def _nested_id_to_str(record: Record, *keys: str) -> None:
    for key in keys:
        if key in record:
            record[key] = _id_to_str(record[key], "id")


def _set_null_if(record: Record, key: str, kind: type | tuple[type, ...]) -> None:
    if isinstance(record.get(key), kind):
        record[key] = None


def _add_null(obj: Any, *keys: str) -> Any:
    """An object with ``keys`` present as null (optional objects the API sends as null)."""
    if not isinstance(obj, dict):
        return obj
    return {**obj, **{k: None for k in keys if k not in obj}}


# --- products, features, user stories -------------------------------------------------------


def _product_ids(r: Record, bits: int) -> None:
    r.update(_id_to_str(r, "id", "default_section_id"))
    for key in ("sections", "sections_with_default"):
        if key in r:
            r[key] = _each(r[key], lambda s: _id_to_str(s, "id"))


def _product_null_lists(r: Record, bits: int) -> None:
    if r.get("sections") == []:
        r["sections"] = None


def _top_id(r: Record, bits: int) -> None:
    r.update(_id_to_str(r, "id"))


def _feature_null_lists(r: Record, bits: int) -> None:
    if r.get("user_stories") == []:
        r["user_stories"] = None


# --- tests ---------------------------------------------------------------------------------

TEST_PAIRS = (
    ("title", "test_title"),
    ("goal", "goal_text"),
    ("instructions", "instructions_text"),
    ("out_of_scope", "out_of_scope_text"),
)


def _test_ids(r: Record, bits: int) -> None:
    r.update(_id_to_str(r, "id"))
    _nested_id_to_str(r, "product", "section", "test_environment")
    if "features" in r:
        r["features"] = _each(r["features"], lambda f: _id_to_str(f, "id", "feature_id"))


def _test_one_name_per_pair(r: Record, bits: int) -> None:
    """The description's test or an older deployment: one name of each pair only."""
    side = (bits >> 8) & 1  # 0: title, goal...; 1: test_title, goal_text...
    for pair in TEST_PAIRS:
        keep, drop = pair[side], pair[1 - side]
        if drop in r and isinstance(r.get(keep), str) and r[keep] == r[drop]:
            del r[drop]


def _null_content_flag(feature: Any) -> Any:
    """A test feature with ``enable_content`` null (documented: null rather than a boolean)."""
    if isinstance(feature, dict) and isinstance(feature.get("enable_content"), bool):
        return {**feature, "enable_content": None}
    return feature


def _test_null_booleans(r: Record, bits: int) -> None:
    _set_null_if(r, "enable_low", bool)
    if "features" in r:
        r["features"] = _each(r["features"], _null_content_flag)


def _test_null_objects(r: Record, bits: int) -> None:
    """Optional objects as null: the environment (lossy), and the documented nullable ones
    the mirror does not model (``section.connection``, a requirement's ``vendor`` and
    ``max_operating_system_version``)."""
    _set_null_if(r, "test_environment", dict)
    if isinstance(r.get("section"), dict):
        r["section"] = _add_null(r["section"], "connection")
    if "requirements" in r:
        r["requirements"] = _each(r["requirements"], lambda q: _add_null(q, "vendor", "max_operating_system_version"))


def _title_number(bits: int) -> int:
    return 2000 + (bits & 0xFF)  # bits 0-7 are not used for anything else


def _test_number_title(r: Record, bits: int) -> None:
    """A test named by a number (a release, a sprint): sent as a JSON number."""
    for key in ("title", "test_title"):
        if isinstance(r.get(key), str):
            r[key] = _title_number(bits)


def _test_number_title_truth(r: Record, bits: int) -> None:
    for key in ("title", "test_title"):
        if isinstance(r.get(key), str):
            r[key] = str(_title_number(bits))


# --- bugs ----------------------------------------------------------------------------------

OLD_BUG_MISSING = ("status", "auto_accepted", "reported_at")


def _bug_steps_as_string(r: Record, bits: int) -> None:
    """The API description's steps: one string, a step per line (sometimes CRLF and blank lines)."""
    steps = r.get("steps")
    if isinstance(steps, list) and all(isinstance(s, str) and s.strip() == s and s for s in steps):
        r["steps"] = ("\r\n\r\n" if bits >> 8 & 1 else "\n").join(steps)


def _bug_old_shape(r: Record, bits: int) -> None:
    for key in OLD_BUG_MISSING:
        r.pop(key, None)


def _bug_old_shape_truth(r: Record, bits: int) -> None:
    for key in OLD_BUG_MISSING:
        if key in r:
            r[key] = None


def _bug_ids(r: Record, bits: int) -> None:
    r.update(_id_to_str(r, "id"))
    _nested_id_to_str(r, "test", "test_feature", "feature")


def _bug_null_booleans(r: Record, bits: int) -> None:
    _set_null_if(r, "known", bool)
    _set_null_if(r, "auto_accepted", bool)


def _bug_empty_dates(r: Record, bits: int) -> None:
    if "exported_at" in r and r["exported_at"] is None:
        r["exported_at"] = ""


def _bug_null_objects(r: Record, bits: int) -> None:
    """``feature`` and ``test_feature`` as null (lossy), a device's ``vendor`` as null."""
    _set_null_if(r, "feature", dict)
    _set_null_if(r, "test_feature", dict)
    if "devices" in r:
        r["devices"] = _each(r["devices"], lambda d: _add_null(d, "vendor"))


def _bug_null_objects_truth(r: Record, bits: int) -> None:
    _set_null_if(r, "feature", dict)
    _set_null_if(r, "test_feature", dict)


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "products": (
        Variant("ids_as_strings", _product_ids),
        Variant("null_lists", _product_null_lists),
    ),
    "features": (
        Variant("ids_as_strings", _top_id),
        Variant("null_lists", _feature_null_lists),
    ),
    "user_stories": (Variant("ids_as_strings", _top_id),),
    "tests": (
        Variant("ids_as_strings", _test_ids),
        Variant("one_name_per_pair", _test_one_name_per_pair),
        Variant("null_booleans", _test_null_booleans, _test_null_booleans),
        Variant("null_objects", _test_null_objects, lambda r, bits: _set_null_if(r, "test_environment", dict)),
        Variant("number_for_text", _test_number_title, _test_number_title_truth),
    ),
    "bugs": (
        Variant("steps_as_string", _bug_steps_as_string),
        Variant("old_shape", _bug_old_shape, _bug_old_shape_truth),
        Variant("ids_as_strings", _bug_ids),
        Variant("null_booleans", _bug_null_booleans, _bug_null_booleans),
        Variant("empty_dates", _bug_empty_dates),
        Variant("null_objects", _bug_null_objects, _bug_null_objects_truth),
    ),
}


class Shapes:
    """Chooses and applies the variants of a world (``share`` of the records, from ``seed``)."""

    def __init__(self, seed: int, share: float) -> None:
        self.seed = seed
        self.share = share

    def _bits(self, entity: str, record: Any) -> int | None:
        """64 bits drawn for this record, or None when it keeps the regular shape."""
        if self.share <= 0 or not isinstance(record, dict):
            return None
        key = f"{self.seed}:shape:{entity}:{record.get('id')}".encode()
        bits = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
        if (bits >> 32) / 2**32 >= self.share:
            return None
        return bits

    def chosen(self, entity: str, record: Any) -> tuple[Variant, ...]:
        """The variants this record is sent in (each with even odds, at least one), or ()."""
        return self._pick(entity, record)[1]

    def _pick(self, entity: str, record: Any) -> tuple[int, tuple[Variant, ...]]:
        bits = self._bits(entity, record)
        variants = VARIANTS.get(entity, ())
        if bits is None or not variants:
            return 0, ()
        picked = tuple(v for i, v in enumerate(variants) if bits >> (16 + i) & 1)
        return bits, picked or (variants[(bits >> 24) % len(variants)],)

    def _apply(self, entity: str, record: Any, truth: bool) -> Any:
        bits, variants = self._pick(entity, record)
        if not variants:
            return record
        changed = dict(record)
        for variant in variants:
            transform = variant.truth if truth else variant.wire
            if transform is not None:
                transform(changed, bits)
        return changed

    def wire(self, entity: str, record: Any) -> Any:
        """The record as sent (a copy when it changes)."""
        return self._apply(entity, record, truth=False)

    def truth(self, entity: str, records: Iterable[Record]) -> list[Record]:
        """The records as a correct mirror holds them after reading them as sent."""
        return [self._apply(entity, r, truth=True) for r in records]

    def wire_body(self, endpoint: str | None, body: Any) -> Any:
        """A 200 body of ``endpoint`` with its records in their shapes; other bodies as they are."""
        where = ENDPOINT_ENTITIES.get(endpoint or "")
        if where is None or self.share <= 0:
            return body
        key, entity = where
        if key is None:
            return self.wire(entity, body)
        if not isinstance(body, dict) or key not in body:
            return body
        value = body[key]
        if isinstance(value, list):
            return {**body, key: [self.wire(entity, item) for item in value]}
        return {**body, key: self.wire(entity, value)}
