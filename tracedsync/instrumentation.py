"""An OpenTelemetry instrumentor, so ``opentelemetry-instrument`` traces locks.

Registered under the ``opentelemetry_instrumentor`` entry point: with
``opentelemetry-distro`` installed, ``opentelemetry-instrument python app.py``
patches ``threading`` at startup and sends tracedsync's spans to the tracer
provider the distro configured. Its metrics, histograms included, go through
tracedsync's own pipeline to the exporters the standard variables name
(``OTEL_METRICS_EXPORTER``: ``otlp``, ``console``, ``none``, or any
installed ``opentelemetry_metrics_exporter``; ``OTEL_EXPORTER_OTLP_*``),
every ``OTEL_METRIC_EXPORT_INTERVAL`` and once more at exit: the metrics API
has no observable histogram, and a provider's readers are fixed when it is
built, so through the distro's ``MeterProvider`` only the sums could go.
The ``TRACEDSYNC_*`` variables still apply (``TRACEDSYNC_EXPORTERS`` adds
tracedsync's own exporters).

``instrument(meter_provider=...)`` given explicitly reports the counters as
observable sums through that provider instead (no histograms).

Needs ``opentelemetry-instrumentation`` (``pip install 'tracedsync[instrument]'``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from tracedsync import patching

#: OTEL_METRICS_EXPORTER names of the OTLP exporters -> protocol (None: from
#: the OTEL_EXPORTER_OTLP_*PROTOCOL variables, else grpc, as the SDK does).
_OTLP_NAMES = {"otlp": None, "otlp_proto_grpc": "grpc", "otlp_proto_http": "http/protobuf"}


def _sdk_or_none(provider: Any, proxy_types: tuple[type, ...]) -> Any:
    # The API's proxy and no-op providers mean "nothing configured": keep
    # tracedsync's own pipeline then.
    if provider is None or isinstance(provider, proxy_types):
        return None
    return provider


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"tracedsync: {message}\n")
    except Exception:
        pass


def metric_exporters(
    environ: Mapping[str, str] | None = None, sdk_configured: bool = True
) -> list[Any]:
    """The metric exporters ``OTEL_METRICS_EXPORTER`` names, for tracedsync's own
    pipeline. Unset means ``otlp`` when an SDK meter provider is configured (the
    specification's default), else none. A name that cannot be made gives one
    warning line and is left out."""
    from opentelemetry.sdk.metrics.export import MetricExporter

    from tracedsync.exporters.otlp import create_otlp_metric_exporter, protocol
    from tracedsync.exporters.sdk import MetricExporterAdapter

    env = os.environ if environ is None else environ
    raw = env.get("OTEL_METRICS_EXPORTER")
    if raw is None:
        raw = "otlp" if sdk_configured else "none"
    out: list[Any] = []
    for name in (n.strip() for n in raw.split(",")):
        if not name or name.lower() == "none":
            continue
        try:
            if name in _OTLP_NAMES:
                proto = _OTLP_NAMES[name]
                if proto is None:
                    set_explicitly = env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get(
                        "OTEL_EXPORTER_OTLP_PROTOCOL"
                    )
                    proto = protocol("metrics", env) if set_explicitly else "grpc"
                exporter = create_otlp_metric_exporter(proto)
                exporter.owned = True
                out.append(exporter)
                continue
            cls = _entry_point(name)
            if not (isinstance(cls, type) and issubclass(cls, MetricExporter)):
                raise RuntimeError(
                    "it is not a push metric exporter (use TRACEDSYNC_EXPORTERS=prometheus "
                    "for Prometheus)"
                )
            adapter = MetricExporterAdapter(cls(), name=f"otel-metrics-{name}")
            adapter.owned = True
            out.append(adapter)
        except Exception as exc:
            _warn(f"OTEL_METRICS_EXPORTER={name!r}: {exc}; tracedsync's metrics do not go there")
    return out


def _entry_point(name: str) -> Any:
    from importlib.metadata import entry_points

    for ep in entry_points(group="opentelemetry_metrics_exporter"):
        if ep.name == name:
            return ep.load()
    raise RuntimeError("no such opentelemetry_metrics_exporter is installed")


class TracedSyncInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Install tracedsync (``tracedsync.install()``) as an OpenTelemetry instrumentor."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        from tracedsync import config

        tracer_provider = _sdk_or_none(
            kwargs.get("tracer_provider") or trace.get_tracer_provider(),
            (trace.ProxyTracerProvider, trace.NoOpTracerProvider),
        )
        options: dict[str, Any] = {}
        if tracer_provider is not None:
            options["tracer_provider"] = tracer_provider
        if kwargs.get("meter_provider") is not None:
            options["meter_provider"] = kwargs["meter_provider"]
        else:
            configured = _sdk_or_none(
                metrics.get_meter_provider(),
                (metrics.NoOpMeterProvider, _proxy_meter_provider_type()),
            )
            extra = metric_exporters(sdk_configured=configured is not None)
            if extra:
                own = config.resolve({}).exporters
                if "otlp" in own:  # it exports tracedsync's metrics already
                    extra = [e for e in extra if not e.name.startswith("otlp-metrics-")]
                options["exporters"] = (*own, *extra)
        patching.install(**options)

    def _uninstrument(self, **kwargs: Any) -> None:
        patching.uninstall()


def _proxy_meter_provider_type() -> type:
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider

        return _ProxyMeterProvider
    except ImportError:  # pragma: no cover - older API layouts
        return type(None)
