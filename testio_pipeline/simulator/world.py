"""The simulated TestIO world: a pure function of (config, anchor, the moment asked about).

Nothing here stores per-moment state. Every entity draws its parameters from its own
``random.Random`` seeded by a string (seed + entity key; string seeds are hashed with SHA-512,
so they do not depend on PYTHONHASHSEED), and every time-dependent field (status, visibility,
titles) is computed from those parameters and ``now``. Static, cheap parts (products, feature
catalogues, per-product test timelines) are cached; full JSON objects are built on demand,
which keeps the "large" preset (1.2M bugs) lazy and small in memory.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import string
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from random import Random
from typing import Any, Callable, Iterable

from pydantic_core import to_json

from . import vocab
from .clock import as_utc
from .config import SimulatorConfig
from .wire_cache import WireCache, interval

DAY = 86_400.0
HOUR = 3_600.0

# Id layout. Each entity type has its own base; lazily generated entities (stories, tests,
# test features, bugs) get a fixed block per product or per test, so ids never collide and
# the owner can be recovered from an id by arithmetic instead of a lookup table.
PRODUCT_ID_BASE, PRODUCT_ID_STRIDE = 20_000, 7
SECTION_ID_BASE, SECTION_BLOCK = 60_000, 100
ENVIRONMENT_ID_BASE, ENVIRONMENT_BLOCK = 90_000, 10
FEATURE_ID_BASE, FEATURE_BLOCK = 300_000, 1_000
STORY_ID_BASE, STORY_BLOCK = 2_000_000, 25_000
TEST_ID_BASE, TEST_BLOCK = 1_000_000, 50_000
TEST_FEATURE_ID_BASE, TEST_FEATURES_PER_TEST = 40_000_000, 8
BUG_ID_BASE = 10_000_000
REPORT_CONFIGURATION_ID_BASE = 7_000

ATTACHMENT_URL = "https://attachments.testio.example/bugs"
BUG_DRAFT_BUDGET = 40_000  # bugs whose static parts stay cached
TEST_CORE_BUDGET = 20_000  # tests whose static parts (title, features) stay cached

# How fast people review a bug of each severity, as a factor on the 1-48 h review delay.
REVIEW_PACE = {"critical": 0.25, "high": 0.6, "low": 1.0, "visual": 1.2, "content": 1.2, "custom": 1.0}
REOPEN_SHARE = 0.15  # rejected bugs the tester disputes, reopened and decided again

def _rng(*parts: object) -> Random:
    """A generator seeded by a stable string key (never by ``hash()``)."""
    return Random(":".join(str(p) for p in parts))


def _lerp(low: float, high: float, u: float) -> float:
    return low + (high - low) * u


def _iso(ts: float, tz: timezone) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


_TZ_CACHE: dict[int, timezone] = {}


def _tz(minutes: int) -> timezone:
    tz = _TZ_CACHE.get(minutes)
    if tz is None:
        tz = _TZ_CACHE[minutes] = timezone(timedelta(minutes=minutes))
    return tz


# -- static entities -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    id: int
    name: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class ProductInfo:
    index: int
    id: int
    name: str
    type: str
    description: str
    slug: str
    sections: tuple[Section, ...]  # empty for products without sections
    default_section: Section
    environments: tuple[dict[str, Any], ...]
    customer_users: tuple[str, ...]
    release_major: int

    @property
    def sectioned(self) -> bool:
        return bool(self.sections)

    def section_by_id(self, section_id: int) -> Section | None:
        """A real section of a sectioned product, or the default section of a plain one."""
        if not self.sectioned:
            return self.default_section if section_id == self.default_section.id else None
        return next((s for s in self.sections if s.id == section_id), None)


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    id: int
    title: str
    description: str
    howtofind: str
    section_ids: tuple[int, ...]  # empty for products without sections
    listed_stories: tuple[str, ...]  # story titles the feature names (orphans left out)
    renamed_at: float | None
    renamed_title: str | None
    removed_at: float | None

    def exists_at(self, ts: float) -> bool:
        return self.removed_at is None or ts < self.removed_at

    def title_at(self, ts: float) -> str:
        if self.renamed_at is not None and ts >= self.renamed_at:
            return self.renamed_title or self.title
        return self.title


@dataclass(frozen=True, slots=True)
class StoryInfo:
    id: int
    title: str
    action: str
    feature: FeatureInfo
    orphan: bool  # not listed by its feature, so title matching finds no feature

    def as_json(self, ts: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "path": f"{self.feature.title_at(ts)} > {self.action[:1].upper()}{self.action[1:]}",
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    """Features and user stories of one product (static; time only hides or renames)."""

    features: tuple[FeatureInfo, ...]
    stories: tuple[StoryInfo, ...]


@dataclass(frozen=True, slots=True)
class TestSpec:
    """The cheap, static timeline of one test; statuses and visibility derive from it."""

    product_index: int
    local: int
    id: int
    created: float
    finalized: float
    waiting: float
    start: float
    end: float
    archive: float
    cancel: float | None
    n_bugs: int
    testing_type: str | None
    tz_minutes: int
    section_index: int  # -1 for products without sections

    @property
    def slot(self) -> int:
        """Position of the test in the global id space; seeds the ids of its parts."""
        return self.id - TEST_ID_BASE

    def status_at(self, ts: float) -> str:
        if self.cancel is not None and ts >= self.cancel:
            return "cancelled"
        if ts < self.finalized:
            return "initialized"
        if ts < self.waiting:
            return "customer_finalized"
        if ts < self.start:
            return "waiting"
        if ts < self.end:
            return "running"
        if ts < self.archive:
            return "locked"
        return "archived"


@dataclass(frozen=True, slots=True)
class _Shape:
    """Relative timings and traits of a test, before it is placed on the time line."""

    testing_type: str | None
    duration: float
    lead: float
    finalize_frac: float
    waiting_frac: float
    archive_delay: float
    n_bugs: int
    tz_minutes: int
    section_index: int


@dataclass(frozen=True, slots=True)
class Transition:
    """One true change of a tracked field of a test or bug, at the moment it happened; a
    first appearance has ``old`` None for every field (the world's log, which syncs observe)."""

    entity: str  # "tests" or "bugs"
    id: int
    product_id: int
    at: float
    field: str
    old: Any
    new: Any


TEST_TRACKED = ("status", "review_status")
BUG_TRACKED = ("status", "severity", "auto_accepted", "known")


def _named(kind: dict[str, int], name: str | None) -> dict[str, Any] | None:
    return None if name is None else {"id": kind[name], "name": name}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True, slots=True)
class Requirement:
    """One platform a test asks for: an OS (with a version range) of a device category."""

    category: str
    os: str
    min_version: str
    max_version: str | None
    vendor: str | None
    devices: tuple[str, ...]
    browsers: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "category": _named(vocab.CATEGORY_IDS, self.category),
            "vendor": _named(vocab.VENDOR_IDS, self.vendor),
            "devices": [_named(vocab.DEVICE_IDS, d) for d in self.devices],
            "operating_system": _named(vocab.OS_IDS, self.os),
            "min_operating_system_version": _named(vocab.OS_VERSION_IDS, f"{self.os} {self.min_version}")
            | {"name": self.min_version},
            "max_operating_system_version": None
            if self.max_version is None
            else _named(vocab.OS_VERSION_IDS, f"{self.os} {self.max_version}") | {"name": self.max_version},
            "browsers": [_named(vocab.BROWSER_IDS, b) for b in self.browsers],
        }


@dataclass(frozen=True, slots=True)
class Device:
    """A device a tester used for a bug, with the browsers used on it (none for apps)."""

    category: str
    vendor: str
    name: str
    os: str
    os_version: str | None  # not every payload says
    browsers: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        out = {
            "id": vocab.DEVICE_IDS[self.name],
            "category": {"name": self.category},
            "vendor": {"name": self.vendor},
            "devices": {"name": self.name},
            "operating_system": _named(vocab.OS_IDS, self.os),
            "browsers": [{"name": b} for b in self.browsers],
        }
        if self.os_version is not None:
            out["operating_system_version"] = {"name": self.os_version}
        return out


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    at: float
    at_iso: str
    body: str
    author: str


@dataclass(frozen=True, slots=True)
class _TestCore:
    """Static parts of a test that bugs need too (title, features), and its requirements."""

    title: str
    area: str
    release: str
    features: tuple[dict[str, Any], ...]
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class _BugDraft:
    """Everything about a bug that does not depend on the time asked about."""

    id: int
    title: str
    severity: str
    decision: str | None  # None: stays forwarded
    decided_at: float | None
    auto: bool
    export_at: float | None
    export_at_iso: str | None
    known: bool
    steps: tuple[str, ...]
    actual_result: str
    reported: float
    reported_at: str
    author: str
    test: tuple[int, str]
    test_feature_id: int | None
    feature: tuple[int, str] | None
    comments: tuple[Comment, ...]  # in time order
    rejection_reason: str | None  # the reason its rejection comment gives; "other": none
    devices: tuple[Device, ...]
    report: tuple[int, tuple[tuple[str, str], ...]] | None  # (configuration id, fields)
    attachments: tuple[tuple[int, str, str], ...]  # (id, url, type)
    language: str
    location: str
    # A rejected bug the tester disputed: back to forwarded at ``reopened_at``, decided again
    # (``redecision``) at ``redecided_at``; None when it never was.
    reopened_at: float | None = None
    redecision: str | None = None
    redecided_at: float | None = None

    def status_at(self, ts: float) -> str:
        """accepted, rejected or forwarded at ``ts`` (a reopened bug is forwarded again)."""
        if self.redecided_at is not None and ts >= self.redecided_at:
            return self.redecision or "forwarded"
        if self.reopened_at is not None and ts >= self.reopened_at:
            return "forwarded"
        if self.decided_at is not None and ts >= self.decided_at:
            return self.decision or "forwarded"
        return "forwarded"

    def auto_accepted_at(self, ts: float) -> bool:
        # Only a first decision is automatic: a reopened bug is decided by a person.
        return self.auto and self.decided_at is not None and ts >= self.decided_at and (
            self.reopened_at is None or ts < self.reopened_at
        )

    @property
    def instants(self) -> tuple[float, ...]:
        """Every moment its status or auto_accepted can change (read as ``ts >= instant``)."""
        return tuple(t for t in (self.decided_at, self.reopened_at, self.redecided_at) if t is not None)

    def as_json(self, ts: float) -> dict[str, Any]:
        """The bug as served at ``ts``; a fresh object every time (faults may mutate it)."""
        decided = self.decided_at is not None and ts >= self.decided_at
        exported = decided and self.export_at is not None and ts >= self.export_at
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status_at(ts),
            "auto_accepted": self.auto_accepted_at(ts),
            "known": self.known,
            "steps": list(self.steps),
            "actual_result": self.actual_result,
            "expected_result": "The action completes and the screen shows the expected result.",
            "reported_at": self.reported_at,
            "exported_at": self.export_at_iso if exported else None,
            "author": {"name": self.author},
            "test": {"id": self.test[0], "title": self.test[1]},
            "test_feature": {"id": self.test_feature_id} if self.test_feature_id is not None else None,
            "feature": {"id": self.feature[0], "title": self.feature[1]} if self.feature else None,
            "comments": [
                {"id": c.id, "body": c.body, "author": {"name": c.author}, "created_at": c.at_iso}
                for c in self.comments
                if c.at <= ts
            ],
            "devices": [d.as_json() for d in self.devices],
            "report": None
            if self.report is None
            else {
                "custom_report_configuration_id": self.report[0],
                "content": {"data": [{"key": k, "value": v} for k, v in self.report[1]]},
            },
            "attachments": [{"id": aid, "url": url, "type": kind} for aid, url, kind in self.attachments],
            "language": self.language,
            "location": self.location,
        }


# -- the world -----------------------------------------------------------------------------


class World:
    """Generates every entity on demand; all public methods take the moment as epoch seconds."""

    def __init__(self, config: SimulatorConfig, anchor: datetime) -> None:
        self.config = config
        self.anchor = as_utc(anchor)
        self.anchor_ts = self.anchor.timestamp()
        self._lock = threading.RLock()
        self._catalogs: dict[int, Catalog] = {}
        self._base_tests: dict[int, tuple[TestSpec, ...]] = {}
        self._base_created: dict[int, list[float]] = {}
        self._new_tests: dict[tuple[int, int], TestSpec] = {}
        self._sorted: dict[int, tuple[tuple[int, int], list[TestSpec]]] = {}
        self.products: tuple[ProductInfo, ...] = self._make_products()
        self._product_by_id = {p.id: p for p in self.products}
        self._bug_slot = 3 * config.bugs_per_test + 10
        # Static bug drafts of recently asked tests (~1.5 KB per bug). The budget covers a whole
        # "bench" world, so repeated syncs are cheap, while the "large" one stays near 60 MB.
        tests_cached = max(512, BUG_DRAFT_BUDGET // max(1, config.bugs_per_test))
        self._bug_drafts = functools.lru_cache(maxsize=tests_cached)(self._make_bug_drafts)
        self._test_core = functools.lru_cache(maxsize=TEST_CORE_BUDGET)(self._make_test_core)
        self._history_days = max(21.0, 1.5 * config.tests_per_product / max(config.new_tests_per_day, 1.0))
        # Serialised tests and bug lists (opt-in, see wire_cache.py): set by Simulator.
        self.wire_cache: WireCache | None = None

    # .. products ...........................................................................

    def _make_products(self) -> tuple[ProductInfo, ...]:
        cfg = self.config
        rng = _rng(cfg.seed, "products")
        n = cfg.products
        types = [vocab.PRODUCT_TYPES[i % len(vocab.PRODUCT_TYPES)] for i in range(n)]
        rng.shuffle(types)
        sectioned = set(rng.sample(range(n), cfg.sectioned_products))
        brands = list(vocab.BRANDS)
        rng.shuffle(brands)
        names: set[str] = set()
        products = []
        for i in range(n):
            ptype = types[i]
            kind = rng.choice(vocab.PRODUCT_KINDS)
            brand = brands[i % len(brands)]
            name = f"{brand} {kind} {vocab.TYPE_LABELS[ptype]}"
            while name in names:  # only with more products than brands
                name = f"{name} {i // len(brands) + 1}"
            names.add(name)
            slug = f"{brand}-{kind}".lower().replace(" ", "-")
            pid = PRODUCT_ID_BASE + PRODUCT_ID_STRIDE * i + rng.randrange(PRODUCT_ID_STRIDE)
            section_base = SECTION_ID_BASE + SECTION_BLOCK * i
            default = Section(section_base, "Default")
            sections: tuple[Section, ...] = ()
            if i in sectioned:
                count = cfg.sections_per_product if cfg.sections_per_product >= 2 else 2
                picked = rng.sample(vocab.SECTION_NAMES, min(count, len(vocab.SECTION_NAMES)))
                picked += [f"Area {k + 1}" for k in range(len(picked), count)]
                sections = tuple(Section(section_base + k + 1, nm) for k, nm in enumerate(picked))
            envs = tuple(
                self._make_environment(rng, i, e, name, slug) for e in range(rng.randint(1, 2))
            )
            users = tuple(
                f"{rng.choice(vocab.CUSTOMER_FIRST)}.{rng.choice(vocab.CUSTOMER_LAST)}"
                for _ in range(rng.randint(2, 4))
            )
            description = (
                f"{name}: the {kind.lower()} {'app' if ptype != 'website' else 'site'} of {brand}. "
                f"Tested on {', '.join(vocab.TYPE_DEVICE_POOLS[ptype])} devices."
            )
            products.append(
                ProductInfo(
                    index=i,
                    id=pid,
                    name=name,
                    type=ptype,
                    description=description,
                    slug=slug,
                    sections=sections,
                    default_section=sections[0] if sections else default,
                    environments=envs,
                    customer_users=tuple(dict.fromkeys(users)),
                    release_major=rng.randint(2, 9),
                )
            )
        return tuple(products)

    @staticmethod
    def _make_environment(rng: Random, index: int, e: int, name: str, slug: str) -> dict[str, Any]:
        env_name = vocab.ENVIRONMENT_NAMES[e % len(vocab.ENVIRONMENT_NAMES)]
        alphabet = string.ascii_letters + string.digits + "!#%&*"
        password = "".join(rng.choice(alphabet) for _ in range(14))
        code = f"{rng.randrange(10**6):06d}"
        access = rng.choice(vocab.ACCESS_NOTES).format(slug=slug, code=code, code3=code[:3])
        return {
            "id": ENVIRONMENT_ID_BASE + ENVIRONMENT_BLOCK * index + e,
            "title": f"{name} {env_name}",
            "url": f"https://{env_name.lower().replace(' ', '-')}.{slug}.example.com",
            "username": f"testio_{slug.replace('-', '_')}_{e + 1}",
            "password": password,
            "access": access,
        }

    def product(self, product_id: int) -> ProductInfo | None:
        return self._product_by_id.get(product_id)

    @staticmethod
    def product_json(p: ProductInfo) -> dict[str, Any]:
        sections = [s.as_json() for s in p.sections]
        return {
            "id": p.id,
            "name": p.name,
            "type": p.type,
            "description": p.description,
            "default_section_id": p.default_section.id,
            "sections": sections,
            # A single default section means "no sections"; sectioned products list theirs.
            "sections_with_default": sections if p.sectioned else [p.default_section.as_json()],
        }

    # .. features and user stories ...........................................................

    def catalog(self, p: ProductInfo) -> Catalog:
        cat = self._catalogs.get(p.index)
        if cat is None:
            with self._lock:
                cat = self._catalogs.get(p.index)
                if cat is None:
                    cat = self._catalogs[p.index] = self._make_catalog(p)
        return cat

    def _make_catalog(self, p: ProductInfo) -> Catalog:
        cfg = self.config
        rng = _rng(cfg.seed, "catalog", p.index)
        titles = self._feature_titles(rng, cfg.features_per_product)
        ns = len(p.sections)
        section_sets: list[tuple[int, ...]] = []
        offset = rng.randrange(ns) if ns else 0
        for f in range(cfg.features_per_product):
            if not ns:
                section_sets.append(())
                continue
            primary = (f + offset) % ns
            chosen = {primary}
            if ns >= 2 and rng.random() < 0.2:  # some features are listed under two sections
                chosen.add((primary + 1 + rng.randrange(ns - 1)) % ns)
            section_sets.append(tuple(sorted(p.sections[k].id for k in chosen)))
        if ns >= 2 and len(section_sets) >= 2 and all(len(s) == 1 for s in section_sets):
            first = section_sets[0][0]
            other = next(s.id for s in p.sections if s.id != first)
            section_sets[0] = tuple(sorted((first, other)))

        story_actions = [rng.sample(vocab.STORY_ACTIONS, cfg.stories_per_feature) for _ in titles]
        total = len(titles) * cfg.stories_per_feature
        orphan_flags = [rng.random() < 0.05 for _ in range(total)]
        if total >= 10 and not any(orphan_flags):
            orphan_flags[rng.randrange(total)] = True

        features: list[FeatureInfo] = []
        stories: list[StoryInfo] = []
        section_names = {s.id: s.name for s in p.sections}
        for f, title in enumerate(titles):
            evolution = rng.random()
            when = self.anchor_ts + rng.uniform(0.3, 21.0) * DAY
            renamed = evolution < 0.04
            removed = 0.04 <= evolution < 0.07
            story_titles = [f"{title}: {a}" for a in story_actions[f]]
            flags = orphan_flags[f * cfg.stories_per_feature : (f + 1) * cfg.stories_per_feature]
            where = section_names[section_sets[f][0]] if section_sets[f] else "Main menu"
            feature = FeatureInfo(
                id=FEATURE_ID_BASE + FEATURE_BLOCK * p.index + f,
                title=title,
                description=f"{title} in {p.name}. Users can {story_actions[f][0]}.",
                howtofind=f"{where} > {title}",
                section_ids=section_sets[f],
                listed_stories=tuple(t for t, orphan in zip(story_titles, flags) if not orphan),
                renamed_at=when if renamed else None,
                renamed_title=f"{title} (redesign)" if renamed else None,
                removed_at=when if removed else None,
            )
            features.append(feature)
            for s, (st, action, orphan) in enumerate(zip(story_titles, story_actions[f], flags)):
                sid = STORY_ID_BASE + STORY_BLOCK * p.index + f * cfg.stories_per_feature + s
                stories.append(StoryInfo(sid, st, action, feature, orphan))
        return Catalog(tuple(features), tuple(stories))

    @staticmethod
    def _feature_titles(rng: Random, count: int) -> list[str]:
        areas = list(vocab.FEATURE_AREAS)
        rng.shuffle(areas)
        titles: list[str] = []
        used: set[str] = set()
        for i in range(count):
            title = areas[i % len(areas)]
            if i >= len(areas):  # more features than areas: qualify, then number
                lap = i // len(areas) - 1
                title = f"{title} ({vocab.FEATURE_QUALIFIERS[lap % len(vocab.FEATURE_QUALIFIERS)]})"
            base, n = title, 2
            while title in used:
                title, n = f"{base} {n}", n + 1
            used.add(title)
            titles.append(title)
        return titles

    def features(self, p: ProductInfo, ts: float, section_id: int | None = None) -> list[FeatureInfo]:
        """Features alive at ``ts``; with a real section id only that section's."""
        out = [f for f in self.catalog(p).features if f.exists_at(ts)]
        if section_id is not None and p.sectioned:
            out = [f for f in out if section_id in f.section_ids]
        return out

    @staticmethod
    def feature_json(f: FeatureInfo, ts: float) -> dict[str, Any]:
        return {
            "id": f.id,
            "title": f.title_at(ts),
            "description": f.description,
            "howtofind": f.howtofind,
            "user_stories": list(f.listed_stories),
        }

    def stories(self, p: ProductInfo, ts: float, section_id: int | None = None) -> list[StoryInfo]:
        """User stories whose feature is alive at ``ts`` (optionally one section's)."""
        out = [s for s in self.catalog(p).stories if s.feature.exists_at(ts)]
        if section_id is not None and p.sectioned:
            out = [s for s in out if section_id in s.feature.section_ids]
        return out

    def story(self, story_id: int, ts: float) -> StoryInfo | None:
        index, offset = divmod(story_id - STORY_ID_BASE, STORY_BLOCK)
        if story_id < STORY_ID_BASE or index >= len(self.products):
            return None
        cfg = self.config
        f, s = divmod(offset, cfg.stories_per_feature)
        if f >= cfg.features_per_product:
            return None
        story = self.catalog(self.products[index]).stories[f * cfg.stories_per_feature + s]
        return story if story.feature.exists_at(ts) else None

    # .. test timelines ........................................................................

    def _draw_shape(self, rng: Random, p: ProductInfo, lead_days: tuple[float, float]) -> _Shape:
        # Draws never depend on earlier outcomes, so one test's shape cannot shift the next one's.
        ttype = rng.choices(vocab.TESTING_TYPES, vocab.TESTING_TYPE_WEIGHTS)[0]
        hours = {"rapid": (2, 6), "usability": (24, 72)}.get(ttype or "", (12, 72))
        duration = rng.randint(*hours) * HOUR
        lead = rng.uniform(*lead_days) * DAY
        finalize_frac = rng.uniform(0.1, 0.4)
        waiting_frac = rng.uniform(0.5, 0.9)
        archive_delay = rng.uniform(1.0, 14.0) * DAY
        no_bugs = rng.random() < 0.12
        spread = rng.uniform(0.25, 1.9)
        n_bugs = 0 if no_bugs else min(self._bug_slot, round(self.config.bugs_per_test * spread))
        if rng.random() < 0.6 and n_bugs == 0:
            archive_delay = 0.0  # nothing to review: running -> archived directly
        tz_minutes = rng.choice(vocab.TZ_OFFSETS_MINUTES)
        section_index = rng.randrange(len(p.sections)) if p.sectioned else -1
        return _Shape(
            ttype, duration, lead, finalize_frac, waiting_frac, archive_delay, n_bugs, tz_minutes, section_index
        )

    @staticmethod
    def _make_spec(
        p: ProductInfo, local: int, created: float, start: float, shape: _Shape, cancel: float | None
    ) -> TestSpec:
        lead = start - created
        end = start + shape.duration
        return TestSpec(
            product_index=p.index,
            local=local,
            id=TEST_ID_BASE + TEST_BLOCK * p.index + local,
            created=created,
            finalized=float(int(created + lead * shape.finalize_frac)),
            waiting=float(int(created + lead * shape.waiting_frac)),
            start=start,
            end=end,
            archive=end + float(int(shape.archive_delay)),
            cancel=None if cancel is None else float(int(cancel)),
            n_bugs=shape.n_bugs,
            testing_type=shape.testing_type,
            tz_minutes=shape.tz_minutes,
            section_index=shape.section_index,
        )

    @staticmethod
    def _anchor_phases(rng: Random, n: int) -> list[str]:
        """Status of each pre-anchor test at the anchor; small worlds still get every status."""
        big = n >= 12
        phases: list[str] = []
        if n >= 6:
            for status in ("initialized", "customer_finalized", "waiting"):
                phases += [status] * (rng.randint(1, 2) if big else 1)
        if n >= 4:
            phases += ["running"] * (rng.randint(1, 3) if big else 1)
        if n >= 6:
            phases += ["cancelled"] * max(1, round(n * 0.04))
        if n >= 2:
            phases += ["locked"] * max(1, round(n * 0.12))
        phases = phases[:n]
        return phases + ["archived"] * (n - len(phases))

    def base_tests(self, p: ProductInfo) -> tuple[TestSpec, ...]:
        """Tests that exist at the anchor, oldest first (local index = creation order)."""
        specs = self._base_tests.get(p.index)
        if specs is None:
            with self._lock:
                specs = self._base_tests.get(p.index)
                if specs is None:
                    specs = self._make_base_tests(p)
                    self._base_created[p.index] = [s.created for s in specs]
                    self._base_tests[p.index] = specs
        return specs

    def _make_base_tests(self, p: ProductInfo) -> tuple[TestSpec, ...]:
        rng = _rng(self.config.seed, "base-tests", p.index)
        anchor = self.anchor_ts
        history = self._history_days * DAY
        drafts = []
        for phase in self._anchor_phases(rng, self.config.tests_per_product):
            shape = self._draw_shape(rng, p, (0.5, 5.0))
            u = rng.uniform(0.05, 0.95)
            cancel_frac = rng.uniform(0.1, 0.95)
            lead, ff, wf = shape.lead, shape.finalize_frac, shape.waiting_frac
            cancel = None
            # Place the test so that at the anchor it is in ``phase``.
            if phase == "initialized":
                start = anchor - u * lead * ff + lead
            elif phase == "customer_finalized":
                start = anchor - _lerp(lead * ff, lead * wf, u) + lead
            elif phase == "waiting":
                start = anchor - _lerp(lead * wf, lead, u) + lead
            elif phase == "running":
                start = anchor - u * shape.duration
            elif phase == "locked":
                if shape.archive_delay == 0.0:
                    # A locked test must still be waiting for its archive date.
                    shape = dataclasses.replace(shape, archive_delay=rng.uniform(1.0, 14.0) * DAY)
                start = anchor - u * shape.archive_delay - shape.duration
            elif phase == "archived":
                start = anchor - shape.archive_delay - _lerp(0.02, 1.0, u) * history - shape.duration
            else:  # cancelled before it started
                created = anchor - _lerp(0.5 * DAY, history, u)
                start = created + lead
                cancel = created + min(cancel_frac * lead, (anchor - created) * 0.9)
            start = float(round(start / 60.0) * 60)  # tests start on the minute
            created = float(int(start - lead))
            drafts.append((created, start, shape, cancel))
        drafts.sort(key=lambda d: d[0])
        return tuple(self._make_spec(p, i, *draft) for i, draft in enumerate(drafts))

    def _new_test(self, p: ProductInfo, k: int) -> TestSpec:
        """The k-th test created after the anchor; creation times are k+u periods apart."""
        key = (p.index, k)
        spec = self._new_tests.get(key)
        if spec is None:
            rng = _rng(self.config.seed, "new-test", p.index, k)
            period = DAY / self.config.new_tests_per_day
            created = float(int(self.anchor_ts + (k + rng.random()) * period))
            shape = self._draw_shape(rng, p, (0.25, 2.5))
            cancelled = rng.random() < 0.04
            cancel_frac = rng.uniform(0.1, 0.95)
            start = float(round((created + shape.lead) / 60.0) * 60)
            cancel = created + cancel_frac * (start - created) if cancelled else None
            spec = self._make_spec(p, self.config.tests_per_product + k, created, start, shape, cancel)
            self._new_tests[key] = spec
        return spec

    def _new_test_count(self, p: ProductInfo, ts: float) -> int:
        rate = self.config.new_tests_per_day
        if rate <= 0 or ts < self.anchor_ts:
            return 0
        cap = TEST_BLOCK - self.config.tests_per_product
        k = int((ts - self.anchor_ts) * rate / DAY)
        if k >= cap:
            return cap
        # Tests 0..k-1 were created before k periods passed; test k maybe.
        return k + (1 if self._new_test(p, k).created <= ts else 0)

    def tests(self, p: ProductInfo, ts: float) -> list[TestSpec]:
        """Tests visible at ``ts``, newest first by end_at (ties: higher id first)."""
        base = self.base_tests(p)
        n_base = bisect.bisect_right(self._base_created[p.index], ts)
        n_new = self._new_test_count(p, ts)
        key = (n_base, n_new)
        cached = self._sorted.get(p.index)
        if cached is not None and cached[0] == key:
            return cached[1]
        specs = list(base[:n_base]) + [self._new_test(p, k) for k in range(n_new)]
        specs.sort(key=lambda s: (s.end, s.id), reverse=True)
        self._sorted[p.index] = (key, specs)
        return specs

    def test(self, test_id: int, ts: float) -> TestSpec | None:
        """The test with this id if it exists at ``ts``."""
        index, local = divmod(test_id - TEST_ID_BASE, TEST_BLOCK)
        if test_id < TEST_ID_BASE or index >= len(self.products):
            return None
        p = self.products[index]
        n = self.config.tests_per_product
        if local < n:
            spec = self.base_tests(p)[local]
            return spec if spec.created <= ts else None
        return self._new_test(p, local - n) if local - n < self._new_test_count(p, ts) else None

    # .. test objects ...........................................................................

    def _make_test_core(self, spec: TestSpec) -> _TestCore:
        p = self.products[spec.product_index]
        rng = _rng(self.config.seed, "test", spec.id)
        section_id = p.sections[spec.section_index].id if spec.section_index >= 0 else None
        available = self.features(p, spec.created, section_id)
        picked = rng.sample(available, min(len(available), rng.randint(1, 4)))
        features = []
        for i, f in enumerate(picked):
            stories = list(f.listed_stories)
            keep = stories[: rng.randint(1, len(stories))] if stories else []
            features.append(
                {
                    "id": TEST_FEATURE_ID_BASE + spec.slot * TEST_FEATURES_PER_TEST + i,
                    "feature_id": f.id,
                    "title": f.title_at(spec.created),  # a test keeps the feature as it was
                    "user_stories": keep,
                    "enable_default": rng.random() < 0.9,
                    "enable_content": rng.random() < 0.5,
                    "enable_visual": rng.random() < 0.6,
                }
            )
        area = picked[0].title_at(spec.created) if picked else "the whole product"
        release = f"{p.release_major}.{spec.local // 3 + 1}"
        kind = (spec.testing_type or "test case").capitalize()
        title = rng.choice(vocab.TEST_TITLE_PATTERNS).format(kind=kind, area=area, release=release)
        return _TestCore(title, area, release, tuple(features), self._requirements(spec, p))

    def test_json(self, spec: TestSpec, ts: float) -> dict[str, Any]:
        """The exploratory-test object as the list and single-test endpoints serve it at ``ts``."""
        p = self.products[spec.product_index]
        core = self._test_core(spec)
        rng = _rng(self.config.seed, "test-detail", spec.id)
        fmt = {"area": core.area, "release": core.release}
        goal = rng.choice(vocab.GOALS).format(**fmt)
        instructions = rng.choice(vocab.INSTRUCTIONS).format(**fmt)
        out_of_scope = rng.choice(vocab.OUT_OF_SCOPE)
        creator = rng.choice(p.customer_users)
        submitter = rng.choice(p.customer_users)
        env = dict(p.environments[rng.randrange(len(p.environments))])
        enable_low, enable_high, enable_critical = rng.random() < 0.7, rng.random() < 0.95, True
        status = spec.status_at(ts)
        tz = _tz(spec.tz_minutes)
        section = p.sections[spec.section_index].as_json() if spec.section_index >= 0 else None
        return {
            "id": spec.id,
            "title": core.title,
            "test_title": core.title,
            "status": status,
            "review_status": _review_status(spec, ts),
            "testing_type": spec.testing_type,
            "goal": goal,
            "goal_text": goal,
            "instructions": instructions,
            "instructions_text": instructions,
            "out_of_scope": out_of_scope,
            "out_of_scope_text": out_of_scope,
            "enable_low": enable_low,
            "enable_high": enable_high,
            "enable_critical": enable_critical,
            "created_at": _iso(spec.created, tz),
            "start_at": _iso(spec.start, tz),
            "end_at": _iso(spec.end, tz),
            "duration": int((spec.end - spec.start) // HOUR),
            "created_by": creator,
            "submitted_by": submitter if ts >= spec.finalized else None,
            "test_environment": env,
            "requirements": [r.as_json() for r in core.requirements],
            "features": [dict(f, user_stories=list(f["user_stories"])) for f in core.features],
            "section": section,
            "product": {"id": p.id, "name": p.name},
        }

    def _requirements(self, spec: TestSpec, p: ProductInfo) -> tuple[Requirement, ...]:
        """One requirement per operating system of the device pools the test asks for."""
        rng = _rng(self.config.seed, "requirements", spec.id)
        pools = vocab.TYPE_DEVICE_POOLS[p.type]
        out = []
        for pool in pools[: rng.randint(1, len(pools))]:
            by_os: dict[str, list[dict[str, Any]]] = {}
            for d in vocab.DEVICES[pool]:
                by_os.setdefault(d["os"], []).append(d)
            for os_name, devices in by_os.items():
                versions = sorted({d["os_version"] for d in devices}, key=_version_key)
                vendors = {d["vendor"] for d in devices}
                out.append(
                    Requirement(
                        category=devices[0]["category"],
                        os=os_name,
                        min_version=versions[0],
                        max_version=versions[-1] if rng.random() < vocab.MAX_OS_VERSION_SHARE else None,
                        vendor=vendors.pop() if len(vendors) == 1 else None,
                        devices=tuple(d["name"] for d in devices if not d["browser"]),
                        browsers=tuple(sorted({d["browser"] for d in devices if d["browser"]})),
                    )
                )
        return tuple(out)

    # .. the transition log .....................................................................

    def transitions(self, ts: float) -> list[Transition]:
        """Every change of a test's or bug's tracked fields up to ``ts`` (first appearances
        included), in time order: the true history a mirror's observations sample."""
        out: list[Transition] = []
        for p in self.products:
            for spec in self.tests(p, ts):
                out += _log(
                    "tests", spec.id, p.id, spec.created, ts,
                    (spec.finalized, spec.waiting, spec.start, spec.end, spec.archive, spec.cancel),
                    lambda t, spec=spec: (spec.status_at(t), _review_status(spec, t)), TEST_TRACKED,
                )
                if spec.n_bugs == 0 or ts < spec.start:
                    continue
                for d in self._bug_drafts(spec):
                    if d.reported > ts:
                        break
                    out += _log(
                        "bugs", d.id, p.id, d.reported, ts, d.instants,
                        lambda t, d=d: (d.status_at(t), d.severity, d.auto_accepted_at(t), d.known), BUG_TRACKED,
                    )
        out.sort(key=lambda t: (t.at, t.entity, t.id, t.field))
        return out

    # .. bugs .................................................................................

    def warm(self, ts: float) -> int:
        """Build the cached static parts of the tests (and their bugs) visible at ``ts``, up to
        the cache budgets, so that first requests cost what repeated ones do. A benchmark
        warms its server before measuring: the simulator stands in for a remote API whose data
        already exists, and generating it must not compete with the sync for this machine's
        CPU. With a wire cache, the serialised answers are built instead, until it is full.
        Returns the number of tests warmed."""
        if self.wire_cache is not None:
            return self._warm_wire(ts)
        warmed = bugs = 0
        for p in self.products:
            for spec in self.tests(p, ts):
                if warmed >= TEST_CORE_BUDGET or bugs + spec.n_bugs > BUG_DRAFT_BUDGET:
                    return warmed
                self._test_core(spec)
                if spec.n_bugs:
                    bugs += len(self._bug_drafts(spec))
                warmed += 1
        return warmed

    def _warm_wire(self, ts: float) -> int:
        cache = self.wire_cache
        assert cache is not None
        warmed = 0
        for p in self.products:
            for spec in self.tests(p, ts):
                # Stop before the budget would evict what was warmed (a test's bugs ~ 4 KB).
                if cache.full(margin_bytes=1024 * (4 + spec.n_bugs)):
                    return warmed
                self.test_wire(spec, ts)
                self.bugs_wire(spec, ts)
                warmed += 1
        return warmed

    def _wire(self, key: tuple, ts: float, build: Callable[[], bytes], instants: Callable[[], list]) -> bytes:
        """``build()``, from the wire cache when it holds at ``ts``; a new answer is kept for the
        interval between the ``instants()`` around ``ts`` (where what it says can change)."""
        cache = self.wire_cache
        if cache is not None:
            hit = cache.get(key, ts)
            if hit is not None:
                return hit
        raw = build()
        if cache is not None:
            cache.put(key, *interval(instants(), ts), raw)
        return raw

    def test_wire(self, spec: TestSpec, ts: float) -> bytes:
        """``test_json(spec, ts)`` as compact JSON, from the wire cache when it holds there."""

        def instants() -> list:
            steps = [spec.finalized, spec.waiting, spec.start, spec.end, spec.archive]
            return steps if spec.cancel is None else [*steps, spec.cancel]

        return self._wire(("test", spec.id), ts, lambda: to_json(self.test_json(spec, ts)), instants)

    def bugs_wire(self, spec: TestSpec, ts: float) -> bytes:
        """The test's bugs at ``ts`` as the comma-separated JSON objects of ``bugs([spec], ts)``
        (b"" for none), from the wire cache when it holds there."""

        def build() -> bytes:
            bugs = self.bugs([spec], ts)
            return to_json(bugs)[1:-1] if bugs else b""

        def instants() -> list:
            # Every time-dependent part of a bug (and whether it is listed) reads ts >= instant.
            events = [spec.start]
            if spec.n_bugs:
                for d in self._bug_drafts(spec):
                    events.append(d.reported)
                    events.extend(d.instants)
                    if d.export_at is not None:
                        events.append(d.export_at)
                    events.extend(c.at for c in d.comments)
            return events

        return self._wire(("bugs", spec.id), ts, build, instants)

    def bugs(self, specs: Iterable[TestSpec], ts: float) -> list[dict[str, Any]]:
        """Bugs of these tests visible at ``ts``, in the order of the tests, then by id."""
        out: list[dict[str, Any]] = []
        for spec in specs:
            if spec.n_bugs == 0 or ts < spec.start:
                continue
            for draft in self._bug_drafts(spec):
                if draft.reported > ts:
                    break  # drafts are in report order
                out.append(draft.as_json(ts))
        return out

    def bug_drafts(self, spec: TestSpec) -> tuple[_BugDraft, ...]:
        """The static part of every bug the test will ever get (cached), in report order."""
        return self._bug_drafts(spec)

    def test_requirements(self, spec: TestSpec) -> tuple[Requirement, ...]:
        return self._test_core(spec).requirements

    def _make_bug_drafts(self, spec: TestSpec) -> tuple[_BugDraft, ...]:
        """The static part of every bug a test will ever get, in report order."""
        p = self.products[spec.product_index]
        core = self._test_core(spec)
        rng = _rng(self.config.seed, "bugs", spec.id)
        # Devices, rejection comments and report fields draw from their own generator, so
        # adding them left every other field of the world as it was.
        parts = _rng(self.config.seed, "bug-parts", spec.id)
        tz = _tz(spec.tz_minutes)
        pools = vocab.TYPE_DEVICE_POOLS[p.type]
        base_url = p.environments[0]["url"]
        fractions = sorted(rng.uniform(0.02, 0.98) for _ in range(spec.n_bugs))
        drafts = []
        for j, frac in enumerate(fractions):
            # Draw everything first: the sequence must not depend on which bugs are kept.
            reported = float(int(spec.start + (spec.end - spec.start) * frac))
            severity = rng.choices(vocab.SEVERITIES, vocab.SEVERITY_WEIGHTS)[0]
            decision = rng.choices(("accepted", "rejected", None), (62, 28, 10))[0]
            auto = decision == "accepted" and rng.random() < 0.25
            # People decide critical bugs first; auto-acceptance comes after TestIO's timeout.
            review_delay = (
                rng.uniform(72, 120) * HOUR if auto else rng.uniform(1, 48) * HOUR * REVIEW_PACE[severity]
            )
            exported = decision == "accepted" and rng.random() < 0.3
            export_delay = rng.uniform(1, 48) * HOUR
            known = rng.random() < 0.1
            problem, trigger = rng.choice(vocab.BUG_PROBLEMS), rng.choice(vocab.BUG_TRIGGERS)
            feature = core.features[rng.randrange(len(core.features))] if core.features else None
            area = feature["title"] if feature else core.area
            location = (
                f"{base_url}/{area.lower().replace(' ', '-')}" if p.type == "website" else f"{area} screen"
            )
            steps = tuple(
                rng.choice(vocab.STEP_TEMPLATES).format(location=location, area=area)
                for _ in range(rng.randint(2, 5))
            )
            first = rng.choice(vocab.DEVICES[rng.choice(pools)])
            devices = self._devices(parts, pools, first)
            rejection = self._rejection(parts, p) if decision == "rejected" else None
            report = self._report(parts, p)
            language = rng.choice(vocab.LANGUAGES)
            author = rng.choice(vocab.TESTER_NAMES)
            notes = []
            for _ in range(rng.randint(0, 2)):
                at = reported + rng.uniform(0.5, 72) * HOUR
                notes.append((at, rng.choice(vocab.COMMENT_BODIES), rng.choice((author, *p.customer_users))))
            n_attachments = rng.randint(0, 2)
            if spec.cancel is not None and reported >= spec.cancel:
                continue  # reported after the test was cancelled: never happened
            bug_id = BUG_ID_BASE + spec.slot * self._bug_slot + j
            decided_at = reported + review_delay if decision is not None else None
            export_at = decided_at + export_delay if exported and decided_at is not None else None
            # A final test's bugs are settled: review and export happen by the time the test
            # is archived (or cancelled) at the latest, never after (as on the real platform,
            # where archiving closes the review). A bug still undecided then stays forwarded.
            final_at = spec.cancel if spec.cancel is not None else spec.archive
            if decided_at is not None and decided_at > final_at:
                decided_at = final_at
            if export_at is not None and export_at > final_at:
                export_at = final_at
            reopened_at = redecision = redecided_at = None
            if decision == "rejected" and decided_at is not None:
                # Its own generator, so adding reopening left every other field as it was.
                dispute = _rng(self.config.seed, "bug-reopen", bug_id)
                if dispute.random() < REOPEN_SHARE:
                    reopened_at = float(int(decided_at + dispute.uniform(2, 48) * HOUR))
                    redecided_at = float(int(reopened_at + dispute.uniform(4, 72) * HOUR * REVIEW_PACE[severity]))
                    redecision = "accepted" if dispute.random() < 0.5 else "rejected"
                    if reopened_at >= final_at:
                        reopened_at = redecision = redecided_at = None
                    elif redecided_at > final_at:
                        redecided_at = final_at
            reason = None
            if rejection is not None and decided_at is not None:
                # Posted when the bug is rejected, so it appears together with the status.
                reason, body, who = rejection
                notes.append((decided_at, body, who))
            notes.sort(key=lambda n: n[0])
            comments = tuple(
                Comment(bug_id * 4 + k, at, _iso(at, tz), body, who) for k, (at, body, who) in enumerate(notes)
            )
            drafts.append(
                _BugDraft(
                    id=bug_id,
                    title=f"{area}: {problem} {trigger}",
                    severity=severity,
                    decision=decision,
                    decided_at=decided_at,
                    auto=auto,
                    export_at=export_at,
                    export_at_iso=_iso(export_at, tz) if export_at is not None else None,
                    known=known,
                    steps=steps,
                    actual_result=f"The {problem} {trigger}.",
                    reported=reported,
                    reported_at=_iso(reported, tz),
                    author=author,
                    test=(spec.id, core.title),
                    test_feature_id=feature["id"] if feature else None,
                    feature=(feature["feature_id"], feature["title"]) if feature else None,
                    comments=comments,
                    rejection_reason=reason,
                    devices=devices,
                    report=report,
                    attachments=tuple(
                        (bug_id * 10 + a, f"{ATTACHMENT_URL}/{bug_id}/{a + 1}.png", "video" if a else "screenshot")
                        for a in range(n_attachments)
                    ),
                    language=language,
                    location=location,
                    reopened_at=reopened_at,
                    redecision=redecision,
                    redecided_at=redecided_at,
                )
            )
        return tuple(drafts)


    @staticmethod
    def _devices(rng: Random, pools: tuple[str, ...], first: dict[str, Any]) -> tuple[Device, ...]:
        picked = [first]
        if rng.random() < vocab.SECOND_DEVICE_SHARE:
            picked.append(rng.choice(vocab.DEVICES[rng.choice(pools)]))
        devices = []
        for d in picked:
            browsers: tuple[str, ...] = ()
            if d["browser"]:
                browsers = (d["browser"],)
                extra = rng.choice(vocab.EXTRA_BROWSERS)
                if rng.random() < vocab.SECOND_BROWSER_SHARE and extra != d["browser"]:
                    browsers += (extra,)
            version = d["os_version"] if rng.random() < vocab.DEVICE_OS_VERSION_SHARE else None
            devices.append(Device(d["category"], d["vendor"], d["name"], d["os"], version, browsers))
        return tuple(devices)

    @staticmethod
    def _rejection(rng: Random, p: ProductInfo) -> tuple[str, str, str]:
        """(reason, comment body, author) of a rejected bug's rejection comment."""
        u = rng.random()
        customer = rng.choice(p.customer_users)
        note = rng.choice(vocab.CUSTOMER_REJECTION_NOTES) if rng.random() < 0.5 else None
        if u < vocab.REQUEST_TIMEOUT_SHARE:
            return "request_timeout", vocab.REQUEST_TIMEOUT_COMMENT, "TestIO"
        if u < vocab.REQUEST_TIMEOUT_SHARE + vocab.UNEXPLAINED_REJECTION_SHARE:
            return "other", rng.choice(vocab.UNEXPLAINED_REJECTIONS), customer
        key, _name, comment = rng.choices(vocab.REJECT_REASONS, vocab.REJECT_REASON_WEIGHTS)[0]
        # The default comment, followed by the customer's own words now and then.
        return key, comment if note is None else f"{comment}\n\n{note}", customer

    @staticmethod
    def _report(rng: Random, p: ProductInfo) -> tuple[int, tuple[tuple[str, str], ...]] | None:
        if rng.random() >= vocab.REPORT_FIELD_SHARE:
            return None
        fields = rng.sample(vocab.REPORT_FIELDS, rng.randint(1, len(vocab.REPORT_FIELDS)))
        return REPORT_CONFIGURATION_ID_BASE + p.index, tuple((key, rng.choice(values)) for key, values in fields)


def _log(
    entity: str,
    entity_id: int,
    product_id: int,
    appears: float,
    until: float,
    instants: Iterable[float | None],
    values: Callable[[float], tuple],
    fields: tuple[str, ...],
) -> list[Transition]:
    """The transitions of one entity: its first appearance, then each instant that changes a field."""
    current = values(appears)
    out = [Transition(entity, entity_id, product_id, appears, f, None, v) for f, v in zip(fields, current)]
    for at in sorted({t for t in instants if t is not None and appears < t <= until}):
        now = values(at)
        out += [
            Transition(entity, entity_id, product_id, at, f, old, new)
            for f, old, new in zip(fields, current, now)
            if old != new
        ]
        current = now
    return out


def _review_status(spec: TestSpec, ts: float) -> str:
    """TestIO reviews a test's setup after the customer submits it."""
    if ts < spec.finalized:
        return "not_submitted"
    if ts < spec.waiting:
        return "in_review"
    return "review_successful"
