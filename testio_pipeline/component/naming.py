"""How one mirror instance names what it defines, so two customers never collide.

A prefixed instance (``acme``) puts its asset keys under ``acme/`` and every other name it
defines (groups, ops, resource keys, sensors, schedules, jobs) after ``acme_``. The
unprefixed one keeps the names the project had before it was a component, so an existing
deployment keeps its asset history; a code location can hold at most one of those.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class Names:
    prefix: str | None = None

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.prefix, name]) if self.prefix else dg.AssetKey(name)

    def keys(self, names) -> list[dg.AssetKey]:
        return [self.key(name) for name in names]

    def of(self, name: str) -> str:
        """A group, op, resource, sensor, schedule or job name of this instance."""
        return f"{self.prefix}_{name}" if self.prefix else name

    @property
    def api(self) -> str:
        return self.of("testio_api")

    @property
    def warehouse(self) -> str:
        return self.of("warehouse")

    @property
    def refresh(self) -> str:
        return self.of("refresh")


UNPREFIXED = Names()
