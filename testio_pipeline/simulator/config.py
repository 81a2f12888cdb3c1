"""Configuration of the simulated TestIO world: size, seed, time anchor and quirks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

SIMULATOR_TOKEN = "sim-demo-token"
SIMULATOR_BASE_URL = "http://testio-simulator.local/customer/v2"
# Path prefix of the API on the simulator's HTTP server (and on the base URL above).
API_PREFIX = "/customer/v2"


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes the fake world; the world is a pure function of this and a time."""

    seed: int = 42
    products: int = 5
    sectioned_fraction: float = 0.25
    sections_per_product: int = 3
    features_per_product: int = 12
    stories_per_feature: int = 3
    tests_per_product: int = 30
    bugs_per_test: int = 5
    new_tests_per_day: float = 6.0
    anchor: datetime | None = None
    latency_ms: float = 0.0
    ignore_paging: bool = False
    truncate_without_page: int = 150
    max_bug_test_ids: int | None = None
    max_in_flight: int | None = None
    # Share of records (of every entity) sent in another shape TestIO documents or sends:
    # steps as a string, the older bug without status, ids as numeric strings, null booleans
    # and objects, "" for a missing date... (see shapes.py). Which ones is fixed by the seed.
    shape_variants: float = 0.0
    token: str = SIMULATOR_TOKEN

    PRESET_NAMES: ClassVar[tuple[str, ...]] = ("demo", "tiny", "bench", "large")

    def __post_init__(self) -> None:
        # Ids are laid out in per-product blocks (see world.py); these bounds keep blocks apart.
        if not 0 <= self.products <= 1000:
            raise ValueError("products must be between 0 and 1000")
        if not 1 <= self.sections_per_product <= 99:
            raise ValueError("sections_per_product must be between 1 and 99")
        if not 1 <= self.features_per_product <= 999:
            raise ValueError("features_per_product must be between 1 and 999")
        if not 1 <= self.stories_per_feature <= 20:
            raise ValueError("stories_per_feature must be between 1 and 20")
        if not 0 <= self.tests_per_product <= 20_000:
            raise ValueError("tests_per_product must be between 0 and 20000")
        if self.bugs_per_test < 0 or self.new_tests_per_day < 0 or self.latency_ms < 0:
            raise ValueError("bugs_per_test, new_tests_per_day and latency_ms must be >= 0")
        if not 0.0 <= self.sectioned_fraction <= 1.0:
            raise ValueError("sectioned_fraction must be between 0 and 1")
        if not 0.0 <= self.shape_variants <= 1.0:
            raise ValueError("shape_variants must be between 0 and 1")

    @property
    def sectioned_products(self) -> int:
        """How many products have sections: a fraction, but at least one when there are two+."""
        count = round(self.products * self.sectioned_fraction)
        if self.sectioned_fraction > 0 and self.products >= 2:
            count = max(count, 1)
        return min(count, self.products)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SimulatorConfig":
        """A named preset ("demo", "tiny", "bench", "large"), optionally with fields overridden."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
        return dataclasses.replace(base, **overrides) if overrides else base


PRESETS: dict[str, SimulatorConfig] = {
    "demo": SimulatorConfig(),
    "tiny": SimulatorConfig(
        products=2,
        sectioned_fraction=0.5,
        sections_per_product=2,
        features_per_product=6,
        stories_per_feature=3,
        tests_per_product=8,
        bugs_per_test=2,
        new_tests_per_day=2.0,
    ),
    "bench": SimulatorConfig(
        products=20, features_per_product=30, tests_per_product=200, bugs_per_test=8
    ),
    "large": SimulatorConfig(
        products=200, features_per_product=40, stories_per_feature=4, tests_per_product=500, bugs_per_test=12
    ),
}
