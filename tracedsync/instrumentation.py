"""An OpenTelemetry instrumentor, so ``opentelemetry-instrument`` traces locks.

Registered under the ``opentelemetry_instrumentor`` entry point: with
``opentelemetry-distro`` installed, ``opentelemetry-instrument python app.py``
patches ``threading`` at startup and sends tracedsync's spans to the tracer
provider the distro configured (and its metrics to the meter provider). The
``TRACEDSYNC_*`` variables still apply.

Needs ``opentelemetry-instrumentation`` (``pip install 'tracedsync[instrument]'``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from tracedsync import patching


def _sdk_or_none(provider: Any, proxy_types: tuple[type, ...]) -> Any:
    # The API's proxy and no-op providers mean "nothing configured": keep
    # tracedsync's own pipeline then.
    if provider is None or isinstance(provider, proxy_types):
        return None
    return provider


class TracedSyncInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Install tracedsync (``tracedsync.install()``) as an OpenTelemetry instrumentor."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = _sdk_or_none(
            kwargs.get("tracer_provider") or trace.get_tracer_provider(),
            (trace.ProxyTracerProvider, trace.NoOpTracerProvider),
        )
        meter_provider = _sdk_or_none(
            kwargs.get("meter_provider") or metrics.get_meter_provider(),
            (metrics.NoOpMeterProvider, _proxy_meter_provider_type()),
        )
        options: dict[str, Any] = {}
        if tracer_provider is not None:
            options["tracer_provider"] = tracer_provider
        if meter_provider is not None:
            options["meter_provider"] = meter_provider
        patching.install(**options)

    def _uninstrument(self, **kwargs: Any) -> None:
        patching.uninstall()


def _proxy_meter_provider_type() -> type:
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider

        return _ProxyMeterProvider
    except ImportError:  # pragma: no cover - older API layouts
        return type(None)
