"""Running the steps of several entities in one go: each as soon as its upstream is done.

The registry's graph is two chains after products: features → user stories and tests → bugs.
The chains wait on the API, not on each other, so their steps run at the same time in
threads (each step has its own client and event loop; the source's one in-flight cap and the
warehouse's one writer are shared). A step whose upstream in the selection failed, or did not
pass (its blocking checks), is not run: it would read what that upstream left behind.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Sequence, TypeVar

from ..entities import Entity

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What became of one entity's step: its value, the error it raised, or why it never ran."""

    entity: Entity
    value: T | None = None
    error: BaseException | None = None
    not_run_because: str | None = None


def run_in_dependency_order(
    entities: Sequence[Entity],
    step: Callable[[Entity], T],
    *,
    passed: Callable[[T], bool] = lambda _: True,
) -> Iterator[Outcome[T]]:
    """Run ``step`` for each of ``entities`` once every upstream entity among them has run and
    ``passed``; yield each outcome as it happens (a step's error is yielded, not raised)."""
    selected = {entity.name for entity in entities}
    waiting = list(entities)
    succeeded: set[str] = set()
    stopped: dict[str, str] = {}  # entity -> why its downstream must not run
    with ThreadPoolExecutor(max_workers=max(1, len(entities)), thread_name_prefix="testio-step") as pool:
        running: dict[Future, Entity] = {}
        while waiting or running:
            before = len(waiting)
            for entity in list(waiting):
                upstream = [name for name in entity.upstream if name in selected]
                blocked = [name for name in upstream if name in stopped]
                if blocked:
                    waiting.remove(entity)
                    reason = "; ".join(f"{name} {stopped[name]}" for name in blocked)
                    stopped[entity.name] = "was not run"
                    yield Outcome(entity, not_run_because=reason)
                elif all(name in succeeded for name in upstream):
                    waiting.remove(entity)
                    running[pool.submit(step, entity)] = entity
            if not running:
                if len(waiting) == before:
                    raise ValueError(f"entities wait on each other: {[e.name for e in waiting]}")
                continue  # what is left was just found blocked; the next pass yields it
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: entities.index(running[f])):
                entity = running.pop(future)
                try:
                    value = future.result()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller with its entity
                    stopped[entity.name] = f"failed ({type(exc).__name__})"
                    yield Outcome(entity, error=exc)
                    continue
                if passed(value):
                    succeeded.add(entity.name)
                else:
                    stopped[entity.name] = "failed a blocking check"
                yield Outcome(entity, value=value)
