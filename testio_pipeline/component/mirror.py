"""`testio_pipeline.TestIOMirror`: one TestIO customer's mirror, as a Dagster Component.

An instance is a ``defs.yaml`` (or a Python object, for scripted deployments) whose typed
attributes become the one ``Settings`` model; from it the instance builds its entity
assets and their checks, the analyst views, the quality report, the refresh sensor, the
nightly full sync, the alert sensor and its resources, all named after the instance
(``naming.py``), so several customers can share one code location. Nothing built here reads
the process environment later: the only values taken from it at run time are the token and
the alert webhook's URL, by the name of their variables (``dg.EnvVar``), so they never become
config, metadata or a log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import dagster as dg
from pydantic import ConfigDict, Field, field_validator, model_validator

from ..freshness import scope_label
from ..settings import (
    DEFAULT_BASE_URL,
    DEFAULT_NIGHTLY_CRON,
    PositiveFloat,
    PositiveInt,
    Settings,
    SettingsError,
    SimulatorPreset,
    TtlSeconds,
    environment,
)
from .analytics.quality_report import build_quality_report
from .analytics.views import build_views
from ..alerts import UI_URL_VARIABLE, WEBHOOK_VARIABLE
from .automation.alert_sensor import SENSOR_NAME as ALERT_SENSOR_NAME, build_alert_sensor
from .automation.nightly_full_sync import build_nightly_full_sync
from .automation.refresh_sensor import SENSOR_NAME, build_refresh_sensor
from .naming import Names
from .resources import Customer, mirror_resources
from .testio.assets import build_testio_assets

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# Field descriptions go in dg.Resolver.default: on a field with a default, the YAML model Dagster
# derives keeps only the resolver's description.
# The whole value is one environment variable: `{{ env.NAME }}` or `{{ env('NAME') }}`.
_ENV_TEMPLATE = re.compile(
    r"""^\s*\{\{\s*env(?:\.(?P<dot>[A-Za-z_][A-Za-z0-9_]*)|\(\s*(?P<q>['"])(?P<call>[A-Za-z_][A-Za-z0-9_]*)(?P=q)\s*\))\s*\}\}\s*$"""
)
LITERAL_TOKEN_REFUSED = (
    "a literal token in defs.yaml is refused (the file is committed, and the token would be "
    "in the definitions); name the environment variable that holds it instead, e.g. "
    'token: "{{ env.ACME_TESTIO_TOKEN }}"'
)


def _token_variable(context: dg.ResolutionContext, raw: Any) -> dg.EnvVar | None:
    """The raw YAML value, before Dagster fills in the template: only a reference passes."""
    if raw is None:
        return None
    match = _ENV_TEMPLATE.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"token: {LITERAL_TOKEN_REFUSED}")
    return dg.EnvVar(match.group("dot") or match.group("call"))


def _webhook_variable(context: dg.ResolutionContext, raw: Any) -> dg.EnvVar | None:
    """Like the token: a webhook URL carries its own secret, so only a reference passes."""
    if raw is None:
        return None
    match = _ENV_TEMPLATE.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(
            "alert_webhook_url: a literal URL is refused (an incoming-webhook URL is a secret); name "
            'its environment variable instead, e.g. alert_webhook_url: "{{ env.ACME_ALERT_WEBHOOK_URL }}"'
        )
    return dg.EnvVar(match.group("dot") or match.group("call"))


class RequestLimits(dg.Resolvable, dg.Model):
    """How hard the instance may press the API: one cap and one rate for the whole run."""

    max_concurrent: Annotated[
        Optional[PositiveInt],
        dg.Resolver.default(description="Requests in flight at once, across every asset of a run (default 10)."),
    ] = None
    max_per_second: Annotated[
        Optional[PositiveFloat],
        dg.Resolver.default(description="Client-side rate limit in requests per second (default: none)."),
    ] = None
    timeout_seconds: Annotated[
        Optional[PositiveFloat],
        dg.Resolver.default(description="Per-request timeout (default 60)."),
    ] = None


class NightlyFullSync(dg.Resolvable, dg.Model):
    """The daily full sync: every page, every bug, deletion detection."""

    cron: Annotated[
        str,
        dg.Resolver.default(description="When it runs, as a cron expression in UTC."),
    ] = DEFAULT_NIGHTLY_CRON
    running: Annotated[
        bool,
        dg.Resolver.default(description="Whether the schedule starts running; false: start it in the UI (Automation)."),
    ] = False


class TestIOMirror(dg.Component, dg.Resolvable, dg.Model):
    """One TestIO customer mirrored into its own DuckDB warehouse: the entity assets with
    their checks, analyst views and quality report, kept fresh by a refresh sensor and a
    nightly full sync."""

    __test__ = False  # its name starts with "Test": not a pytest test class
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: Annotated[
        str,
        Field(
            pattern=NAME_PATTERN,
            description=(
                "The customer's label and asset-key prefix: its assets are `<name>/products` ... "
                "`<name>/bugs`, and its sensors, schedule, job and resources are named `<name>_...`. "
                "Lower case letters, digits and underscores."
            ),
        ),
    ]
    prefix_keys: Annotated[
        bool,
        dg.Resolver.default(
            description=(
                "false keeps the unprefixed names of a deployment from before components "
                "(`bugs`, `testio_refresh_sensor`, resource `refresh`), so its asset history stays "
                "attached. At most one instance in a code location can do this."
            ),
        ),
    ] = True
    from_environment: Annotated[
        bool,
        dg.Resolver.default(
            description=(
                "Take every attribute not set here from the TESTIO_* environment variables (and a "
                ".env file), as the project did before components: the default instance's way."
            ),
        ),
    ] = False
    token: Annotated[
        Optional[dg.EnvVar],
        dg.Resolver(
            _token_variable,
            model_field_type=Optional[str],
            inject_before_resolve=False,
            description=(
                'The Customer API token, named by its environment variable: "{{ env.ACME_TESTIO_TOKEN }}". '
                "A literal token is refused. Read when a run starts; never stored, logged or shown."
            ),
            examples=["{{ env.ACME_TESTIO_TOKEN }}"],
        ),
    ] = None
    base_url: Annotated[
        Optional[str],
        dg.Resolver.default(
            description=(
                f"The Customer API, e.g. {DEFAULT_BASE_URL} (needs token). Absent: the built-in "
                "simulator serves fake, deterministic data in-process."
            ),
        ),
    ] = None
    simulator_preset: Annotated[
        Optional[SimulatorPreset],
        dg.Resolver.default(description="Size of the built-in simulator's world when there is no base_url (default demo)."),
    ] = None
    simulator_now: Annotated[
        Optional[str],
        dg.Resolver.default(description="Freezes the built-in simulator's clock at this ISO time: a reproducible world."),
    ] = None
    product_ids: Annotated[
        Optional[list[int]],
        dg.Resolver.default(description="The products to mirror (default: every product the token sees)."),
    ] = None
    ttl_seconds: Annotated[
        Optional[TtlSeconds],
        dg.Resolver.default(description="The one TTL: how old a table may get before the sensor refreshes it (default 3600, min. 60)."),
    ] = None
    sensor_interval_seconds: Annotated[
        Optional[PositiveInt],
        dg.Resolver.default(description="How often the refresh sensor is evaluated (default 60)."),
    ] = None
    nightly_full_sync: Annotated[
        Optional[NightlyFullSync],
        dg.Resolver.default(description="The daily full sync's schedule (default 03:00 UTC, stopped)."),
    ] = None
    request_limits: Annotated[
        Optional[RequestLimits],
        dg.Resolver.default(description="Request limits against the API."),
    ] = None
    warehouse: Annotated[
        Optional[str],
        dg.Resolver.default(
            description=(
                "The customer's warehouse: a DuckDB file (relative to the working directory; default "
                "data/testio.duckdb) or a DuckLake's `ducklake:` ATTACH string."
            ),
        ),
    ] = None
    lake_data_path: Annotated[
        Optional[str],
        dg.Resolver.default(description="Where a DuckLake warehouse keeps its data files (a folder or an object-store URL)."),
    ] = None

    alert_webhook_url: Annotated[
        Optional[dg.EnvVar],
        dg.Resolver(
            _webhook_variable,
            model_field_type=Optional[str],
            inject_before_resolve=False,
            description=(
                "Where this customer's alerts go (docs/alerts.md), named by its environment variable: "
                '"{{ env.ACME_ALERT_WEBHOOK_URL }}" (default: TESTIO_ALERT_WEBHOOK_URL). Unset: alerts are only logged.'
            ),
            examples=["{{ env.ACME_ALERT_WEBHOOK_URL }}"],
        ),
    ] = None
    dagster_ui_url: Annotated[
        Optional[str],
        dg.Resolver.default(
            description="The Dagster UI's base URL, for run links in alerts (default: TESTIO_DAGSTER_UI_URL, else no links).",
        ),
    ] = None

    @field_validator("token", mode="before")
    @classmethod
    def _only_a_variable(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dg.EnvVar):
            raise ValueError(LITERAL_TOKEN_REFUSED.replace("in defs.yaml", "in a mirror's attributes"))
        return value

    @field_validator("alert_webhook_url", mode="before")
    @classmethod
    def _webhook_only_a_variable(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dg.EnvVar):
            raise ValueError("alert_webhook_url: name the environment variable holding the URL (dg.EnvVar), not the URL")
        return value

    @model_validator(mode="after")
    def _token_and_url_go_together(self) -> "TestIOMirror":
        if self.from_environment:
            return self  # the variables decide, as before components (Settings.from_env)
        if self.base_url and self.token is None:
            raise ValueError(f"{self.name}: base_url is set but token is not: the API needs one")
        if self.token is not None and not self.base_url:
            raise ValueError(
                f"{self.name}: token is set but base_url is not: set base_url ({DEFAULT_BASE_URL}) "
                "for the real API, or remove token to use the built-in simulator"
            )
        return self

    @property
    def names(self) -> Names:
        return Names(self.name if self.prefix_keys else None)

    def settings(self, env: dict[str, str] | None = None) -> Settings:
        """This instance's settings, without the token's value (``token_variable`` names it)."""
        base = Settings.from_env(env) if self.from_environment else Settings()
        values = base.model_dump(exclude={"token"})
        if base.token and not base.base_url:
            values["base_url"] = DEFAULT_BASE_URL
        limits = self.request_limits
        given = {
            "base_url": self.base_url,
            "product_ids": tuple(sorted(set(self.product_ids))) if self.product_ids else None,
            "duckdb_path": self.warehouse,
            "lake_data_path": self.lake_data_path,
            "max_concurrent_requests": limits.max_concurrent if limits else None,
            "max_requests_per_second": limits.max_per_second if limits else None,
            "request_timeout_seconds": limits.timeout_seconds if limits else None,
            "cache_ttl_seconds": self.ttl_seconds,
            "sensor_interval_seconds": self.sensor_interval_seconds,
            "simulator_preset": self.simulator_preset,
            "simulator_now": self.simulator_now,
        }
        values.update({key: value for key, value in given.items() if value is not None})
        return Settings(**values)

    def token_variable(self, env: dict[str, str] | None = None) -> dg.EnvVar | None:
        """The variable holding the token, or None when the instance uses the simulator."""
        if self.token is not None:
            return self.token
        if self.from_environment and self.settings(env).base_url:
            return dg.EnvVar("TESTIO_CUSTOMER_API_TOKEN")
        return None

    def asset_keys(self) -> list[dg.AssetKey]:
        """Every asset of this instance: the entities, the views and the report."""
        from ..entities import ENTITIES
        from ..warehouse.views import VIEWS

        return self.names.keys([*(e.name for e in ENTITIES), *VIEWS, "quality_report"])

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        try:
            settings = self.settings()
        except SettingsError as exc:
            raise SettingsError(f"TestIOMirror {self.name!r}: {exc}") from None
        names = self.names
        token = self.token_variable()
        customer = Customer(
            self.name, settings, token.env_var_name if token is not None else None, from_environment=self.from_environment
        )
        entities = build_testio_assets(names, customer, settings.cache_ttl_seconds)
        views, views_sensor = build_views(names, customer)
        report, report_sensor = build_quality_report(names, customer)
        scope = scope_label(settings.product_ids)
        refresh_sensor = build_refresh_sensor(
            entities,
            current_scope=lambda: scope,
            interval_seconds=settings.sensor_interval_seconds,
            name=names.of(SENSOR_NAME),
            customer=self.name,
        )
        alert_sensor = build_alert_sensor(
            customer=self.name,
            freshness_keys=self.asset_keys(),
            entity_keys=[key for asset in entities for key in asset.keys],
            blocking_checks=[spec.key for asset in entities for spec in asset.check_specs if spec.blocking],
            name=names.of(ALERT_SENSOR_NAME),
            interval_seconds=settings.sensor_interval_seconds,
            webhook_variable=self.alert_webhook_url.env_var_name if self.alert_webhook_url else WEBHOOK_VARIABLE,
            ui_url=self.dagster_ui_url or environment().get(UI_URL_VARIABLE) or None,
            secret_variables=[token.env_var_name] if token is not None else [],
        )
        nightly = self.nightly_full_sync or NightlyFullSync()
        job, schedule = build_nightly_full_sync(entities, cron=nightly.cron, running=nightly.running, names=names, customer=self.name)
        return dg.Definitions(
            assets=[*entities, views, report],
            sensors=[refresh_sensor, views_sensor, report_sensor, alert_sensor],
            jobs=[job],
            schedules=[schedule],
            resources=mirror_resources(names),
        )


SCAFFOLD = '''\
# One TestIO customer, mirrored into its own warehouse (docs/customers.md).
# As written it runs against the built-in simulator (fake, deterministic data).
type: testio_pipeline.TestIOMirror

attributes:
  # Label and asset-key prefix: this customer's assets are {name}/products ... {name}/bugs.
  name: {name}

  # The real API: set both. The token is named by its environment variable; a literal
  # token is refused.
  # base_url: https://api.test.io/customer/v2
  # token: "{{{{ env.{variable} }}}}"

  # Without base_url: the built-in simulator's world (tiny, demo, bench, large).
  simulator_preset: demo

  # The products to mirror; absent: every product the token sees.
  # product_ids: [20005, 20010]

  # The one TTL (min. 60 s) and how often the refresh sensor looks.
  ttl_seconds: 3600
  sensor_interval_seconds: 60

  # The daily full sync (with deletion detection); running: false leaves it to the UI.
  nightly_full_sync:
    cron: "0 3 * * *"
    running: false

  request_limits:
    max_concurrent: 10
    # max_per_second: 5
    timeout_seconds: 60

  # A DuckDB file of its own, or a DuckLake (ducklake:... with lake_data_path).
  warehouse: data/{name}.duckdb

  # Alerts (docs/alerts.md): the variable holding this customer's webhook URL (default
  # TESTIO_ALERT_WEBHOOK_URL; a literal URL is refused) and the UI's base URL for run links.
  # alert_webhook_url: "{{{{ env.{alert_variable} }}}}"
  # dagster_ui_url: http://127.0.0.1:3000
'''


class MirrorScaffolder(dg.Scaffolder):
    """``dg scaffold defs testio_pipeline.TestIOMirror customers/acme``: a commented
    ``defs.yaml`` named after the folder, working as written against the simulator."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = re.sub(r"[^a-z0-9_]", "_", Path(request.target_path).name.lower()).strip("_") or "customer"
        if not name[0].isalpha():
            name = f"c_{name}"
        target = Path(request.target_path)
        target.mkdir(parents=True, exist_ok=True)
        text = SCAFFOLD.format(
            name=name, variable=f"{name.upper()}_TESTIO_TOKEN", alert_variable=f"{name.upper()}_ALERT_WEBHOOK_URL"
        )
        (target / "defs.yaml").write_text(text.replace("type: testio_pipeline.TestIOMirror", f"type: {request.type_name}"))


TestIOMirror = dg.scaffold_with(MirrorScaffolder)(TestIOMirror)
