"""Real OTLP receivers for tests: gRPC and HTTP/protobuf, in-process, on 127.0.0.1.

Each receiver binds port 0, keeps every export request it accepted (parsed
into the ``opentelemetry.proto`` messages) and can be told to refuse
(gRPC ``UNAVAILABLE``, HTTP 503), to stall (hold calls unanswered: a slow
collector), to stop (nothing listens on its port any more: the collector
is down) and to start again on the same port. Servers
are always shut down and their threads joined with a timeout.

No mocks: the official OTLP exporters talk to these over real sockets;
:func:`point_otlp_at` sets the standard ``OTEL_EXPORTER_OTLP_*`` variables
that make ``tracedsync.configure(exporters=["otlp"])`` use one of them.
"""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HOST = "127.0.0.1"
#: Longest a test waits for a server to stop or a thread to end.
JOIN_TIMEOUT = 10.0


class Received:
    """What a receiver accepted, plus how many calls it refused."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        #: Export calls answered with UNAVAILABLE / 503, per signal.
        self.refused = {"traces": 0, "metrics": 0}
        #: Export calls held by stall() (then refused, never stored), per signal.
        self.stalled = {"traces": 0, "metrics": 0}
        #: Calls being held right now.
        self.holding = 0
        #: HTTP only: (path, content-type, content-encoding) of every request.
        self.http_requests: list[tuple[str, str, str]] = []

    def add(self, signal: str, request: Any) -> None:
        with self._cond:
            (self.traces if signal == "traces" else self.metrics).append(request)
            self._cond.notify_all()

    def add_http(self, path: str, content_type: str, encoding: str) -> None:
        with self._cond:
            self.http_requests.append((path, content_type, encoding))

    def add_refused(self, signal: str) -> None:
        with self._cond:
            self.refused[signal] += 1
            self._cond.notify_all()

    def add_stalled(self, signal: str, delta: int) -> None:
        with self._cond:
            if delta > 0:
                self.stalled[signal] += 1
            self.holding += delta
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 20.0) -> bool:
        """Wait until ``predicate(self)`` holds; False after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def spans(self) -> list[tuple[Any, Any, Any]]:
        """Every received span as ``(resource, scope, span)``, in arrival order."""
        with self._cond:
            requests = list(self.traces)
        return list(iter_spans(requests))


def iter_spans(requests: list[ExportTraceServiceRequest]) -> Iterator[tuple[Any, Any, Any]]:
    """``(resource, scope, span)`` of every span in ``requests``."""
    for request in requests:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    yield rs.resource, ss.scope, span


class Receiver:
    """What both receivers share: storage, the refuse switch, start/stop/restart."""

    protocol = ""
    _instances = 0

    def __init__(self) -> None:
        Receiver._instances += 1
        #: Every thread this receiver starts has a name beginning with this.
        self.thread_prefix = f"otlp-{self.protocol.split('/')[0]}-receiver-{Receiver._instances}"
        self.received = Received()
        #: Answer every export with UNAVAILABLE (gRPC) or 503 (HTTP).
        self.refusing = False
        self.port = 0
        self.running = False
        self._answering = threading.Event()
        self._answering.set()

    @property
    def endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        assert self.port, "receiver never started"
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def stall(self) -> None:
        """Hold every export call unanswered until :meth:`resume` (a slow collector).

        A held call is then refused and its data dropped, as by a collector
        that gave up: the exporter timed out long before.
        """
        self._answering.clear()

    def resume(self) -> None:
        self._answering.set()

    def held(self, signal: str) -> bool:
        """Called by a handler: wait while stalled; True if this call was held."""
        if self._answering.is_set():
            return False
        self.received.add_stalled(signal, +1)
        try:
            # Bounded, so that a forgotten resume() never hangs a test.
            self._answering.wait(JOIN_TIMEOUT / 2)
        finally:
            self.received.add_stalled(signal, -1)
        return True

    def restart(self) -> None:
        """Start again on the same port (the collector comes back)."""
        assert not self.running
        self.start()

    def threads(self) -> list[str]:
        """Names of this receiver's threads still alive."""
        return [t.name for t in threading.enumerate() if t.name.startswith(self.thread_prefix)]

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- gRPC ---------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.handle("traces", request, context)
        return ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.handle("metrics", request, context)
        return ExportMetricsServiceResponse()


class GrpcReceiver(Receiver):
    """An OTLP/gRPC collector: ``TraceService/Export`` and ``MetricsService/Export``."""

    protocol = "grpc"

    def __init__(self) -> None:
        super().__init__()
        self._server: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None

    def handle(self, signal: str, request: Any, context: Any) -> None:
        if self.held(signal):
            context.abort(grpc.StatusCode.UNAVAILABLE, "test receiver stalled")
        if self.refusing:
            self.received.add_refused(signal)
            context.abort(grpc.StatusCode.UNAVAILABLE, "test receiver refusing")
        self.received.add(signal, request)

    def start(self) -> None:
        assert not self.running
        self._executor = futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix=self.thread_prefix
        )
        # No SO_REUSEPORT: a second server must never share our port.
        server = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), server)
        port = server.add_insecure_port(f"{HOST}:{self.port}")
        if not port or (self.port and port != self.port):
            self._executor.shutdown(wait=True)
            raise OSError(f"grpc receiver could not bind {HOST}:{self.port}")
        self.port = port
        server.start()
        self._server = server
        self.running = True

    def stop(self) -> None:
        """Stop listening and end the server's threads (bounded)."""
        if not self.running:
            return
        self.running = False
        self.resume()  # stalled handlers answer and end
        server, self._server = self._server, None
        stopped = server.stop(grace=None)
        assert stopped.wait(JOIN_TIMEOUT), "grpc receiver did not stop"
        executor, self._executor = self._executor, None
        assert executor is not None
        done = threading.Event()

        def shut() -> None:
            executor.shutdown(wait=True)
            done.set()

        # ThreadPoolExecutor.shutdown has no timeout: wait for it on a helper.
        helper = threading.Thread(target=shut, name=f"{self.thread_prefix}-stop", daemon=True)
        helper.start()
        helper.join(JOIN_TIMEOUT)
        assert done.is_set(), "grpc receiver worker threads did not end"


# -- HTTP/protobuf ------------------------------------------------------------

_PATHS = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


class _Handler(BaseHTTPRequestHandler):
    # One request per connection: no idle keep-alive thread outlives a call.
    protocol_version = "HTTP/1.0"
    #: Seconds a handler waits on a silent client before giving up.
    timeout = JOIN_TIMEOUT / 2
    server: _HttpServer

    def handle(self) -> None:
        # Name the handler thread so the fixture can tell it is gone.
        threading.current_thread().name = f"{self.server.receiver.thread_prefix}-handler"
        super().handle()

    def do_POST(self) -> None:
        receiver = self.server.receiver
        route = _PATHS.get(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        receiver.received.add_http(self.path, self.headers.get("Content-Type") or "", encoding)
        if route is None:
            self._reply(404, b"unknown path", "text/plain")
            return
        signal, request_type, response_type = route
        if receiver.held(signal):
            self._reply(503, b"test receiver stalled", "text/plain")
            return
        if receiver.refusing:
            receiver.received.add_refused(signal)
            self._reply(503, b"test receiver refusing", "text/plain")
            return
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                self._reply(415, b"unsupported content-encoding", "text/plain")
                return
            request = request_type.FromString(body)
        except Exception as exc:  # a malformed body is the exporter's bug: say so
            self._reply(400, f"bad request: {exc}".encode(), "text/plain")
            return
        receiver.received.add(signal, request)
        self._reply(200, response_type().SerializeToString(), "application/x-protobuf")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (its timeout) while we stalled
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the receiver's storage, not its access log


class _HttpServer(ThreadingHTTPServer):
    # Track handler threads so server_close() joins them (each ends within
    # the handler timeout).
    daemon_threads = False
    block_on_close = True

    def __init__(self, port: int, receiver: HttpReceiver) -> None:
        self.receiver = receiver
        super().__init__((HOST, port), _Handler)


class HttpReceiver(Receiver):
    """An OTLP/HTTP collector: ``POST /v1/traces`` and ``/v1/metrics`` (protobuf)."""

    protocol = "http/protobuf"

    def __init__(self) -> None:
        super().__init__()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        assert not self.running
        server = _HttpServer(self.port, self)
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_prefix,
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        self.running = True

    def stop(self) -> None:
        """Stop listening and join the serving and handler threads (bounded)."""
        if not self.running:
            return
        self.running = False
        self.resume()  # stalled handlers answer and end
        server, thread = self._server, self._thread
        self._server = self._thread = None
        assert server is not None and thread is not None
        closer = threading.Thread(
            target=lambda: (server.shutdown(), server.server_close()),
            name=f"{self.thread_prefix}-stop",
            daemon=True,
        )
        closer.start()
        closer.join(JOIN_TIMEOUT)
        thread.join(JOIN_TIMEOUT)
        assert not closer.is_alive() and not thread.is_alive(), "http receiver did not stop"


RECEIVERS: dict[str, type[Receiver]] = {"grpc": GrpcReceiver, "http/protobuf": HttpReceiver}


# -- a collector that never answers ---------------------------------------------


class HungServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never reads
    or writes a byte: a collector that hangs (or a firewall that swallows
    packets after the handshake). :meth:`stop` closes the listener and every
    accepted connection and joins the accepting thread (bounded)."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hung-server", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def accepted(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept(self) -> None:
        while self._running.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)

    def start(self) -> HungServer:
        self._running.set()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running.clear()
        self._thread.join(JOIN_TIMEOUT)
        assert not self._thread.is_alive(), "hung server's thread did not end"
        self._listener.close()
        with self._lock:
            for conn in self._connections:
                conn.close()

    def __enter__(self) -> HungServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Signal-specific variables that would override the generic ones we set.
_OVERRIDES = [
    f"OTEL_EXPORTER_OTLP_{signal}_{what}"
    for signal in ("TRACES", "METRICS", "LOGS")
    for what in (
        "ENDPOINT",
        "PROTOCOL",
        "TIMEOUT",
        "INSECURE",
        "HEADERS",
        "COMPRESSION",
        "CERTIFICATE",
    )
] + ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_RESOURCE_ATTRIBUTES"]


def point_otlp_at(
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,
    *,
    timeout_s: float = 10.0,
    service: str = "tracedsync-tests",
) -> None:
    """Set the standard OTLP variables so ``exporters=["otlp"]`` talks to ``receiver``.

    The official exporters read them when they are built, in ``configure()``.
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` is in seconds for the Python exporters.
    """
    for name in _OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    # Local receivers are reached directly, whatever proxy the machine sets
    # (requests and grpc both honour these).
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", receiver.protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", f"{timeout_s:g}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", service)
    if receiver.protocol == "grpc":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    else:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_INSECURE", raising=False)
