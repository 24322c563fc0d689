"""tracedsync's own resource, scope and metric data: what the pipeline builds
and the jsonfile, console and Prometheus exporters read.

Plain slotted classes with the field names of the OpenTelemetry SDK's
(``opentelemetry.sdk.metrics.export``, ``Resource``,
``InstrumentationScope``), so code reading either reads both. The SDK is
not imported here: a program whose exporters are jsonfile or console never
loads it. The adapters that hand data to SDK exporters convert these
objects (``tracedsync.exporters.sdk``), and import the SDK only when such an
exporter is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: OTLP's ``AggregationTemporality`` values (the SDK's enum has the same).
AGGREGATION_TEMPORALITY_DELTA = 1
AGGREGATION_TEMPORALITY_CUMULATIVE = 2


class Resource:
    """The attributes of the process the telemetry comes from.

    ``defaulted`` names the attributes tracedsync filled in because nothing
    configured them (``service.name``'s ``unknown_service`` default): an
    SDK resource detector's value takes precedence over them.
    """

    __slots__ = ("attributes", "defaulted", "schema_url")

    def __init__(
        self,
        attributes: Mapping[str, Any],
        schema_url: str = "",
        defaulted: frozenset[str] = frozenset(),
    ) -> None:
        self.attributes = dict(attributes)
        self.schema_url = schema_url
        self.defaulted = defaulted


class Scope:
    """The instrumentation scope (``tracedsync`` and its version)."""

    __slots__ = ("name", "schema_url", "version")

    def __init__(self, name: str, version: str | None = None, schema_url: str = "") -> None:
        self.name = name
        self.version = version
        self.schema_url = schema_url


class Exemplar:
    """One measurement of a histogram point's bucket, with the span that made it."""

    __slots__ = ("filtered_attributes", "span_id", "time_unix_nano", "trace_id", "value")

    def __init__(
        self,
        filtered_attributes: Mapping[str, Any],
        value: float,
        time_unix_nano: int,
        span_id: int | None,
        trace_id: int | None,
    ) -> None:
        self.filtered_attributes = filtered_attributes
        self.value = value
        self.time_unix_nano = time_unix_nano
        self.span_id = span_id
        self.trace_id = trace_id


class NumberDataPoint:
    __slots__ = ("attributes", "start_time_unix_nano", "time_unix_nano", "value")

    def __init__(
        self,
        attributes: Mapping[str, Any],
        start_time_unix_nano: int,
        time_unix_nano: int,
        value: int | float,
    ) -> None:
        self.attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.value = value


class HistogramDataPoint:
    __slots__ = (
        "attributes",
        "bucket_counts",
        "count",
        "exemplars",
        "explicit_bounds",
        "max",
        "min",
        "start_time_unix_nano",
        "sum",
        "time_unix_nano",
    )

    def __init__(
        self,
        attributes: Mapping[str, Any],
        start_time_unix_nano: int,
        time_unix_nano: int,
        count: int,
        sum: float,
        bucket_counts: Sequence[int],
        explicit_bounds: Sequence[float],
        min: float,
        max: float,
        exemplars: Sequence[Exemplar] = (),
    ) -> None:
        self.attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.count = count
        self.sum = sum
        self.bucket_counts = bucket_counts
        self.explicit_bounds = explicit_bounds
        self.min = min
        self.max = max
        self.exemplars = exemplars


class Sum:
    __slots__ = ("aggregation_temporality", "data_points", "is_monotonic")

    def __init__(
        self,
        data_points: Sequence[NumberDataPoint],
        aggregation_temporality: int,
        is_monotonic: bool,
    ) -> None:
        self.data_points = data_points
        self.aggregation_temporality = aggregation_temporality
        self.is_monotonic = is_monotonic


class Gauge:
    __slots__ = ("data_points",)

    def __init__(self, data_points: Sequence[NumberDataPoint]) -> None:
        self.data_points = data_points


class Histogram:
    __slots__ = ("aggregation_temporality", "data_points")

    def __init__(
        self, data_points: Sequence[HistogramDataPoint], aggregation_temporality: int
    ) -> None:
        self.data_points = data_points
        self.aggregation_temporality = aggregation_temporality


class Metric:
    __slots__ = ("data", "description", "name", "unit")

    def __init__(self, name: str, description: str, unit: str, data: Sum | Gauge | Histogram):
        self.name = name
        self.description = description
        self.unit = unit
        self.data = data


class ScopeMetrics:
    __slots__ = ("metrics", "schema_url", "scope")

    def __init__(self, scope: Scope, metrics: Sequence[Metric], schema_url: str = "") -> None:
        self.scope = scope
        self.metrics = metrics
        self.schema_url = schema_url


class ResourceMetrics:
    __slots__ = ("resource", "schema_url", "scope_metrics")

    def __init__(
        self, resource: Resource, scope_metrics: Sequence[ScopeMetrics], schema_url: str = ""
    ) -> None:
        self.resource = resource
        self.scope_metrics = scope_metrics
        self.schema_url = schema_url


class MetricsData:
    __slots__ = ("resource_metrics",)

    def __init__(self, resource_metrics: Sequence[ResourceMetrics]) -> None:
        self.resource_metrics = resource_metrics
