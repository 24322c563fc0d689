"""The ``prometheus`` exporter: ``/metrics`` on 127.0.0.1 for Prometheus to scrape.

Needs the ``prometheus`` extra (``pip install 'tracedsync[prometheus]'``,
which brings ``prometheus_client``). A custom collector on a private
registry turns the same metric data the other exporters get (built from the
counters at each scrape) into Prometheus families:

======================================  =====================================
OpenTelemetry metric                    Prometheus series
======================================  =====================================
``tracedsync.acquisitions``             ``tracedsync_acquisitions_total``
``tracedsync.contentions``              ``tracedsync_contentions_total``
``tracedsync.timeouts``                 ``tracedsync_timeouts_total``
``tracedsync.wait.time`` (s)            ``tracedsync_wait_time_seconds_total``
``tracedsync.hold.time`` (s)            ``tracedsync_hold_time_seconds_total``
``tracedsync.wait.duration`` (s)        ``tracedsync_wait_duration_seconds_bucket``,
                                        ``_sum``, ``_count`` (exemplars with
                                        ``trace_id``/``span_id`` in OpenMetrics)
``tracedsync.hold.duration`` (s)        ``tracedsync_hold_duration_seconds_*``
``tracedsync.telemetry.produced``,      ``tracedsync_telemetry_produced_total``,
``.dropped``, ``.suppressed``           ``..._dropped_total``, ``..._suppressed_total``
``tracedsync.telemetry.offered``,       ``tracedsync_telemetry_offered_total``,
``.exported``, ``.lane_dropped``,       ``..._exported_total``, ``..._lane_dropped_total``,
``.failed``                             ``..._failed_total`` (label ``exporter``)
======================================  =====================================

Attributes become labels with dots made underscores: ``sync_kind``,
``sync_name``, ``exporter``.

Ports: ``TRACEDSYNC_PROMETHEUS_PORT`` (default 9464). The first process of
a run binds it; a process that finds it taken (a traced child of that
program) binds a free port instead. Every process lists itself in
``<output_dir>/prometheus-targets.json``, Prometheus ``file_sd`` format,
updated under a lock file and replaced atomically, so one ``file_sd_configs``
entry finds all of a run's processes; each removes itself when it ends.

The server answers one request at a time on an internal thread, so nothing
it does is traced; it is built while the configuring thread is marked
internal too (``prometheus_client`` and ``socketserver`` make locks and
events of their own, which must not show up as the program's).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from tracedsync import _threads
from tracedsync.exporters.base import Exporter, ExporterUnavailable

INSTALL_HINT = "the prometheus exporter needs its extra: pip install 'tracedsync[prometheus]'"
DEFAULT_PORT = 9464
PORT_VARIABLE = "TRACEDSYNC_PROMETHEUS_PORT"
HOST = "127.0.0.1"
TARGETS_FILE = "prometheus-targets.json"
#: Seconds a scrape connection may stay silent before it is dropped.
REQUEST_TIMEOUT_S = 5.0

_LABEL_RE = re.compile(r"[^A-Za-z0-9_]")


class PrometheusUnavailable(ExporterUnavailable):
    """prometheus_client is not installed, or no port could be bound."""


def configured_port(environ: Mapping[str, str] | None = None) -> int:
    """``TRACEDSYNC_PROMETHEUS_PORT`` (0-65535), else :data:`DEFAULT_PORT`; a bad
    value gives one warning line naming it and the default."""
    env = os.environ if environ is None else environ
    text = env.get(PORT_VARIABLE)
    if text is None or not text.strip():
        return DEFAULT_PORT
    value = text.strip()
    if re.fullmatch(r"[0-9]{1,5}", value) and int(value) <= 65535:
        return int(value)
    _warn(f"ignoring {PORT_VARIABLE}={text!r} (expected a port, 0-65535); using {DEFAULT_PORT}")
    return DEFAULT_PORT


def prometheus_name(name: str, unit: str) -> str:
    """``tracedsync.wait.duration`` in seconds -> ``tracedsync_wait_duration_seconds``
    (``_total`` is added to counters by the exposition)."""
    base = _LABEL_RE.sub("_", name)
    if unit == "s" and not base.endswith("_seconds"):
        base += "_seconds"
    return base


def label_name(key: str) -> str:
    return _LABEL_RE.sub("_", key)


def families(metrics_data: Any, core: Any) -> Iterator[Any]:
    """The Prometheus metric families of a ``MetricsData`` (``core`` is
    ``prometheus_client.core``): sums as counters, gauges as gauges, explicit-
    bucket histograms with cumulative ``le`` buckets and their exemplars."""
    from prometheus_client.utils import floatToGoString

    from tracedsync.exporters.model import Gauge, Histogram, Sum

    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = metric.data
                points = list(data.data_points)
                keys = sorted({k for p in points for k in (p.attributes or {})})
                labels = [label_name(k) for k in keys]
                name = prometheus_name(metric.name, metric.unit)
                doc = metric.description or metric.name

                def values(point: Any, keys: list[str] = keys) -> list[str]:
                    attrs = point.attributes or {}
                    return [str(attrs.get(k, "")) for k in keys]

                if isinstance(data, Sum) and data.is_monotonic:
                    family = core.CounterMetricFamily(name, doc, labels=labels)
                    for p in points:
                        family.add_metric(values(p), float(p.value))
                elif isinstance(data, (Sum, Gauge)):
                    family = core.GaugeMetricFamily(name, doc, labels=labels)
                    for p in points:
                        family.add_metric(values(p), float(p.value))
                elif isinstance(data, Histogram):
                    family = core.HistogramMetricFamily(name, doc, labels=labels)
                    for p in points:
                        family.add_metric(
                            values(p), _buckets(p, core, floatToGoString), float(p.sum)
                        )
                else:
                    continue
                yield family


def _buckets(point: Any, core: Any, go_float: Callable[[float], str]) -> list[Any]:
    """Cumulative ``(le, count[, exemplar])`` buckets of one histogram point."""
    by_bucket: dict[int, Any] = {}
    bounds = list(point.explicit_bounds)
    for exemplar in getattr(point, "exemplars", None) or ():
        if not (exemplar.trace_id and exemplar.span_id):
            continue
        value = float(exemplar.value)
        index = next((i for i, b in enumerate(bounds) if value <= b), len(bounds))
        by_bucket[index] = core.Exemplar(
            {"trace_id": f"{exemplar.trace_id:032x}", "span_id": f"{exemplar.span_id:016x}"},
            value,
            exemplar.time_unix_nano / 1e9,
        )
    out: list[Any] = []
    total = 0
    for i, count in enumerate(point.bucket_counts):
        total += int(count)
        le = go_float(bounds[i]) if i < len(bounds) else "+Inf"
        if i in by_bucket:
            out.append((le, float(total), by_bucket[i]))
        else:
            out.append((le, float(total)))
    if not out or out[-1][0] != "+Inf":
        out.append(("+Inf", float(total)))
    return out


class _Registry:
    """A private registry: what ``prometheus_client``'s exposition asks of one
    (``collect``, ``restricted_registry``) over our single collector."""

    def __init__(self, source: Callable[[], Any], core: Any) -> None:
        self._source = source
        self._core = core

    def collect(self) -> Iterable[Any]:
        data = self._source()
        if data is None:
            return []
        return list(families(data, self._core))

    def restricted_registry(self, names: Iterable[str]) -> _Registry:
        wanted = set(names)
        outer = self

        class _Restricted(_Registry):
            def collect(self) -> Iterable[Any]:
                return [
                    f
                    for f in outer.collect()
                    if any(s.name in wanted for s in f.samples) or f.name in wanted
                ]

        return _Restricted(self._source, self._core)


class PrometheusExporter(Exporter):
    """Serve ``/metrics`` on 127.0.0.1 (a pull exporter: asked, not handed, metrics)."""

    name = "prometheus"

    def __init__(
        self,
        output_dir: str,
        run_id: str,
        *,
        port: int | None = None,
        pid: int | None = None,
    ) -> None:
        from tracedsync.outdir import prepare_output_dir

        self.output_dir = prepare_output_dir(output_dir)
        self.run_id = run_id
        self.pid = os.getpid() if pid is None else pid
        self._source: Callable[[], Any] = lambda: None
        self._thread: threading.Thread | None = None
        self._closed = False
        wanted = configured_port() if port is None else port
        mark = not _threads.is_internal()
        if mark:
            # prometheus_client's import makes its default registry (a lock, its
            # collectors registered under it) and socketserver makes events:
            # none of them is the program's, so none may be traced.
            _threads.mark_internal()
        try:
            self._server, self.port = self._build(wanted)
        finally:
            if mark:
                _threads.unmark_internal()
        self.destination = f"http://{HOST}:{self.port}/metrics"
        if wanted and self.port != wanted and not _listed_ports(self._targets_path()):
            _warn(
                f"port {wanted} is in use; serving /metrics on {HOST}:{self.port} "
                f"(listed in {self._targets_path()})"
            )
        update_targets(self._targets_path(), add=self._entry())
        _live.add(self)

    @classmethod
    def from_config(cls, config: Any) -> PrometheusExporter:
        return cls(config.output_dir, config.run_id)

    def _build(self, wanted: int) -> tuple[Any, int]:
        try:
            from prometheus_client import core, make_wsgi_app
        except ImportError as exc:
            raise PrometheusUnavailable(f"{INSTALL_HINT} ({exc})") from None
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

        class Handler(WSGIRequestHandler):
            timeout = REQUEST_TIMEOUT_S

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes are not the program's output

        app = make_wsgi_app(_Registry(lambda: self._source(), core))
        server = None
        for port in dict.fromkeys([wanted, 0]):
            try:
                server = WSGIServer((HOST, port), Handler)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or port == 0:
                    raise PrometheusUnavailable(
                        f"cannot serve /metrics on {HOST}:{port}: {exc.strerror}"
                    ) from None
        assert server is not None
        server.set_app(app)
        return server, int(server.server_address[1])

    def set_metrics_source(self, source: Callable[[], Any]) -> None:
        self._source = source

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._serve, name="tracedsync-prometheus", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        _threads.mark_internal()
        try:
            self._server.serve_forever(poll_interval=0.1)
        except Exception as exc:
            _warn(f"the prometheus exporter stopped serving: {exc}")
        finally:
            _threads.unmark_internal()

    def _targets_path(self) -> str:
        return os.path.join(self.output_dir, TARGETS_FILE)

    def _entry(self) -> dict[str, Any]:
        return {
            "targets": [f"{HOST}:{self.port}"],
            "labels": {"tracedsync_run_id": self.run_id, "tracedsync_pid": str(self.pid)},
        }

    def shutdown(self, timeout_s: float) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            update_targets(self._targets_path(), remove=self._entry())
        finally:
            if self._thread is not None:
                self._server.shutdown()  # waits for serve_forever to return
                self._thread.join(timeout_s)
            self._server.server_close()

    def flush(self, timeout_s: float) -> None:
        pass  # nothing is buffered: every scrape reads the counters

    def close_inherited(self) -> None:
        """In a fork child: let go of the parent's listening socket (the child's
        own exporter binds another port)."""
        self._closed = True
        try:
            self._server.socket.close()
        except OSError:
            pass


# -- the targets file -----------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


def _read_targets(path: str) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return []
    except OSError:
        return []  # a link or worse: it is rewritten from scratch
    with os.fdopen(fd, encoding="utf-8") as f:
        try:
            entries = json.load(f)
        except ValueError:
            return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("targets"), list)]


def _listed_ports(path: str) -> set[str]:
    return {t for e in _read_targets(path) for t in e["targets"] if isinstance(t, str)}


def update_targets(
    path: str, *, add: dict[str, Any] | None = None, remove: dict[str, Any] | None = None
) -> None:
    """Add or remove one entry of a ``file_sd`` targets file, under an
    exclusive lock on ``<path>.lock`` (several processes of a run write it),
    dropping entries of processes that have ended; the new content replaces
    the file atomically (Prometheus may read it at any moment)."""
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    lock_fd = os.open(path + ".lock", flags, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        entries = []
        for entry in _read_targets(path):
            if remove is not None and entry.get("targets") == remove["targets"]:
                continue
            if add is not None and entry.get("targets") == add["targets"]:
                continue
            pid = str((entry.get("labels") or {}).get("tracedsync_pid", ""))
            if pid.isdigit() and not _pid_alive(int(pid)):
                continue
            entries.append(entry)
        if add is not None:
            entries.append(add)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
            0o644,
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entries, f, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        os.close(lock_fd)


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"tracedsync: {message}\n")
    except Exception:
        pass


#: Exporters alive in this process: a fork child lets go of their sockets.
_live: weakref.WeakSet[PrometheusExporter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only the parent's: the child's own pipeline may have made its exporter
    # already (at-fork hooks run in registration order).
    for exporter in list(_live):
        if exporter.pid != os.getpid():
            exporter.close_inherited()
            _live.discard(exporter)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
