"""Dagster resources: thin wrappers that hand the plain-Python layers to the assets."""


import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import dagster as dg
from pydantic import PrivateAttr

from ..domain.vocabulary import utcnow
from ..run_health import HOST_TAG, host_name
from ..run_log import RunLog, trigger_of
from ..settings import DEFAULT_DUCKDB_PATH, Settings, SettingsError, environment
from ..source import SIMULATOR_NOTICE, ApiSource, simulator_notice
from ..sync import SyncOptions
from ..testio import RetryPolicy
from ..testio.http import DEFAULT_BASE_URL_SOURCE, DEFAULT_TOKEN_SOURCE
from ..warehouse import Warehouse
from ..warehouse.backends import is_lake, mask_password
from . import event_log
from .naming import Names

if TYPE_CHECKING:  # the simulator is loaded only by runs that use it
    from ..simulator import Simulator

# Every asset that writes a warehouse takes a slot of that warehouse's pool (`default_limit: 1`
# in dagster.yaml gives each new pool one slot), so only one process ever writes a file while
# customers with different warehouses write at the same time. The default warehouse keeps the
# pool name from before there were several.
DUCKDB_POOL = "testio_duckdb"


def writer_pool(warehouse: str) -> str:
    """The pool of the steps that write ``warehouse`` (a DuckDB path or a ``ducklake:`` string).

    A file's pool follows its absolute path, so two spellings of one file share it; a lake's
    follows its ATTACH string with any password masked, which never reaches the pool's name.
    """
    if is_lake(warehouse):
        digest = hashlib.sha256(mask_password(warehouse).encode()).hexdigest()[:10]
        return f"{DUCKDB_POOL}__lake_{digest}"
    path = os.path.abspath(os.path.expanduser(warehouse))
    if path == os.path.abspath(DEFAULT_DUCKDB_PATH):
        return DUCKDB_POOL
    stem = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(path).lower().removesuffix(".duckdb")).strip("_")[:40]
    return f"{DUCKDB_POOL}__{stem or 'warehouse'}_{hashlib.sha256(path.encode()).hexdigest()[:10]}"


@contextmanager
def writing_step(context: dg.AssetExecutionContext, warehouse: Warehouse, step: str) -> Iterator[None]:
    """The body of a step of the pool, holding the warehouse file's writer lock as well.

    The pool's slot claim can let two runs' steps in at the same moment; the lock then makes
    the later one wait, and says so in its log (``warehouse/writer_lock.py``).
    """

    def waiting(holder: str) -> None:
        context.log.warning(
            f"{step}: waiting for {holder}, which is writing {warehouse.location} "
            f"(both steps were given the {context.op_def.pool} pool's slot at once)"
        )

    with warehouse.exclusive_writer(f"run {context.run.run_id} step {step}", on_wait=waiting) as waited:
        if waited:
            context.log.info(f"{step}: writing {warehouse.location} after waiting {waited:.1f}s for it")
        yield


@dataclass(frozen=True)
class Customer:
    """What a customer instance fixed when it was loaded, handed to its assets by closure.

    Not resource config: a run that gives a resource any config (``--config-json``) replaces
    all of it, which would drop the customer's API, warehouse or product scope. A resource's
    own fields, when set, override this for a run (tests point runs at their own servers).
    """

    name: str = "testio"
    settings: Settings = field(default_factory=Settings)  # never holds the token's value
    token_variable: str | None = None  # the environment variable the token is read from
    from_environment: bool = True  # configured by the TESTIO_* variables, as the default instance is

    @property
    def token_source(self) -> str:
        """What an error about a refused token tells the reader to check."""
        if self.from_environment and self.token_variable in (None, "TESTIO_CUSTOMER_API_TOKEN"):
            return DEFAULT_TOKEN_SOURCE
        return f"{self.token_variable}, the {self.name!r} instance's token (and its base_url)"

    @property
    def base_url_source(self) -> str:
        """What an error about an unreachable API tells the reader to check."""
        if self.from_environment:
            return DEFAULT_BASE_URL_SOURCE
        return f"the {self.name!r} instance's base_url"

    @property
    def simulator_notice(self) -> str:
        return SIMULATOR_NOTICE if self.from_environment else simulator_notice(self.name)

    @property
    def pool(self) -> str:
        return writer_pool(self.settings.duckdb_path)

    def token(self) -> str:
        """The token, read when a run starts (the environment, then a .env file)."""
        value = environment().get(self.token_variable or "", "").strip()
        if not value:
            raise SettingsError(
                f"{self.token_variable} is not set: the {self.name!r} instance reads its API token from it"
            )
        return value


DEFAULT_CUSTOMER = Customer()


class CustomerApiResource(dg.ConfigurableResource):
    """The TestIO Customer API of an instance (its base URL and token variable), or the
    built-in simulator when it has no base URL.

    Only the token variable's name is ever held, never the token. The fields are per-run
    overrides: ``base_url`` with ``token`` (as ``dg.EnvVar("NAME")``, so config holds the name
    only) points a run at another API; ``simulator_config_json`` forces the in-process
    simulator with that world; since the world is a pure function of its config and clock,
    tests can rebuild the very same world the run sees.
    """

    base_url: str | None = None
    token: str | None = None
    simulator_preset: str | None = None
    simulator_config_json: str | None = None  # SimulatorConfig fields, overriding the preset
    simulator_now: str | None = None  # ISO time to freeze the simulator's clock at
    retry_attempts: int | None = None
    retry_wait_seconds: float | None = None  # initial backoff (tests use tiny values)

    _source: ApiSource | None = PrivateAttr(default=None)

    @classmethod
    def for_simulator(cls, simulator: "Simulator", **fields) -> "CustomerApiResource":
        """A resource whose runs see exactly ``simulator``'s world at its clock's current time."""
        config = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in dataclasses.asdict(simulator.config).items()
        }
        config["anchor"] = simulator.anchor.isoformat()
        return cls(
            simulator_config_json=json.dumps(config),
            simulator_now=simulator.clock.now().isoformat(),
            **fields,
        )

    def settings(self, customer: Customer = DEFAULT_CUSTOMER) -> Settings:
        """The instance's settings with this run's overrides and the token read in."""
        own = customer.settings
        if self.simulator_config_json:
            base_url, token = None, None
        elif self.base_url:
            base_url, token = self.base_url, self.token
            if not token:
                raise SettingsError(f"the API at {self.base_url} needs a token, and none is configured")
        else:
            base_url = own.base_url
            token = customer.token() if base_url else None
        return own.model_copy(
            update={
                "base_url": base_url,
                "token": token,
                "simulator_preset": self.simulator_preset or own.simulator_preset,
                "simulator_now": self.simulator_now or own.simulator_now,
            }
        )

    def _simulator(self, settings: Settings) -> "Simulator | None":
        if not (self.simulator_config_json or settings.uses_simulator):
            return None
        from ..simulator import SimClock, Simulator, SimulatorConfig
        from ..simulator.clock import parse_iso

        overrides = json.loads(self.simulator_config_json) if self.simulator_config_json else {}
        if overrides.get("anchor"):
            overrides["anchor"] = parse_iso(overrides["anchor"])
        clock = SimClock(parse_iso(settings.simulator_now)) if settings.simulator_now else None
        return Simulator(SimulatorConfig.preset(settings.simulator_preset, **overrides), clock=clock)

    def source(self, customer: Customer = DEFAULT_CUSTOMER) -> ApiSource:
        # One source per run, so every asset of the run sees the same simulator instance.
        if self._source is None:
            settings = self.settings(customer)
            source = ApiSource.from_settings(settings, simulator=self._simulator(settings))
            if not self.base_url:  # the instance's own token, not one given in the run's config
                source.client_options["token_source"] = customer.token_source
                source.client_options["base_url_source"] = customer.base_url_source
            if self.retry_attempts is not None or self.retry_wait_seconds is not None:
                defaults = RetryPolicy()
                wait = self.retry_wait_seconds if self.retry_wait_seconds is not None else defaults.wait_initial
                source.retry = RetryPolicy(
                    attempts=self.retry_attempts or defaults.attempts,
                    wait_initial=wait,
                    wait_max=max(wait, wait * 8),
                    wait_jitter=wait / 2,
                    retry_after_floor=min(defaults.retry_after_floor, wait),
                )
            self._source = source
        return self._source


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse of an instance: a DuckDB file, or a ``ducklake:`` ATTACH string whose data
    files go under ``lake_data_path``; ``path`` overrides the instance's for a run.

    Every asset of the project uses it, so it also keeps the run's SQLite event-log files open
    while the run's steps execute (``event_log.py``: each event then costs one commit).
    """

    path: str | None = None
    lake_data_path: str | None = None

    _event_log: ExitStack | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        self._event_log = event_log.hold_open(context.instance, run.run_id if run is not None else None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._event_log is not None:
            self._event_log.close()

    def warehouse(self, customer: Customer = DEFAULT_CUSTOMER) -> Warehouse:
        own = customer.settings
        return Warehouse(self.path or own.duckdb_path, lake_data_path=self.lake_data_path or own.lake_data_path)


class RefreshResource(dg.ConfigurableResource):
    """Run-wide refresh options (mode, product scope) and the run's `sync_events` row.

    Set per run, e.g. ``--config-json '{"resources": {"refresh": {"config": {"mode": "full"}}}}'``
    (an instance named ``acme`` calls it ``acme_refresh``); without ``product_ids`` a run
    covers the instance's configured scope.
    """

    mode: Literal["incremental", "full"] = "incremental"
    product_ids: list[int] | None = None

    _run_log: RunLog | None = PrivateAttr(default=None)
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        if run is not None:
            self._run_log = RunLog(run_id=run.run_id, trigger=trigger_of(run.tags), mode=self.mode)
            if context.instance is not None and run.tags.get(HOST_TAG) != host_name():
                # Lets fail_dead_runs judge this run if its process dies.
                context.instance.add_run_tags(run.run_id, {HOST_TAG: host_name()})
        self._instance = context.instance

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # Runs after the last step, whether the run succeeded or failed.
        if self._run_log is not None:
            self._run_log.finish()

    def options(self, context: dg.AssetExecutionContext, customer: Customer = DEFAULT_CUSTOMER) -> SyncOptions:
        scope = tuple(sorted(set(self.product_ids))) if self.product_ids else customer.settings.product_ids
        return SyncOptions(mode=self.mode, product_ids=scope, run_id=context.run.run_id)

    def run_log(self, context: dg.AssetExecutionContext, warehouse: Warehouse) -> RunLog:
        """The run's log, its sync_events row opened on first use (inside a pool slot)."""
        if self._run_log is None:  # direct invocation without a run (e.g. unit tests)
            self._run_log = RunLog(run_id=context.run.run_id, trigger="cli/ui", mode=self.mode)
        if self._run_log.warehouse is None:
            self._close_abandoned(warehouse)
        self._run_log.begin(warehouse)
        return self._run_log

    def _close_abandoned(self, warehouse: Warehouse) -> None:
        """Rows left 'running' by runs that are over (killed, crashed) are closed as failed."""
        instance = self._instance
        for run_id in warehouse.running_sync_events():
            if run_id == self._run_log.run_id:
                continue
            record = instance.get_run_by_id(run_id) if instance is not None else None
            if record is None or record.is_finished:
                warehouse.finish_sync_event(
                    run_id, "failed", utcnow(), {}, error="the run ended without closing its sync event (killed?)"
                )



def mirror_resources(names: Names) -> dict[str, dg.ConfigurableResource]:
    """One instance's resources, under its own keys, with nothing set: what the instance fixed
    comes by closure (``Customer``), so a run's config can only add to it."""
    return {names.api: CustomerApiResource(), names.warehouse: WarehouseResource(), names.refresh: RefreshResource()}
