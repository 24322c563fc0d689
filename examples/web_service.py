"""A threaded HTTP service whose handlers share a lock-protected cache.

    python examples/web_service.py                    # console lines + a summary
    python examples/web_service.py --otlp             # also to OTEL_EXPORTER_OTLP_ENDPOINT
    tracedsync run -- python examples/web_service.py  # JSON files + the run summary

A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 serves ``GET /item/<key>``;
each request is an OpenTelemetry server span, and the handlers compute
missing values *while holding* the shared ``cache_lock`` (the classic
mistake). A built-in load generator sends requests from several client
threads. The ``lock.wait`` spans are children of the request spans that
waited: in a trace viewer each slow request shows the lock wait inside it
and, through the span link, the request that held the lock.

With ``--otlp`` both the request spans and tracedsync's spans go to the
collector at ``OTEL_EXPORTER_OTLP_ENDPOINT`` (protocol from
``OTEL_EXPORTER_OTLP_PROTOCOL``); needs ``pip install 'tracedsync[otlp]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import tracedsync


def app_tracer_provider(otlp: bool) -> tuple[TracerProvider, InMemorySpanExporter]:
    """The service's own tracing: request spans kept in memory (and sent by OTLP)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "web_service"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if otlp:
        if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--otlp", action="store_true", help="export to an OTLP collector too")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--span-ids", metavar="FILE", help="write the request span ids (JSON)")
    args = parser.parse_args()

    provider, requests_memory = app_tracer_provider(args.otlp)
    tracer = provider.get_tracer("web_service")
    lock_spans = InMemorySpanExporter()
    if not tracedsync.installed():  # under `tracedsync run` it already is
        exporters: list[object] = ["console", lock_spans]
        if args.otlp:
            exporters.append("otlp")
        tracedsync.install(exporters=exporters, hold_threshold_ms=20)

    cache: dict[str, str] = {}
    cache_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with tracer.start_as_current_span("GET /item", kind=SpanKind.SERVER) as span:
                key = self.path.rsplit("/", 1)[-1]
                span.set_attribute("http.route", "/item/{key}")
                with cache_lock:
                    value = cache.get(key)
                    if value is None:
                        time.sleep(0.005)  # computing under the lock: everyone waits
                        value = cache[key] = key.upper() * 3
                    elif len(cache) > 4:
                        cache.clear()  # keep some misses coming
                body = json.dumps({"key": key, "value": value}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the console for tracedsync's lines

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, name="http-server", daemon=True)
    serving.start()
    port = server.server_address[1]
    failures: list[str] = []

    def client(number: int) -> None:
        for i in range(args.requests):
            url = f"http://127.0.0.1:{port}/item/k{(number + i) % 7}"
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    json.load(response)
            except Exception as exc:
                failures.append(f"{url}: {exc}")

    started = time.monotonic()
    clients = [
        threading.Thread(target=client, args=(n,), name=f"client-{n}") for n in range(args.clients)
    ]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    elapsed = time.monotonic() - started
    server.shutdown()
    server.server_close()
    tracedsync.flush()
    provider.force_flush()

    requests = [s for s in requests_memory.get_finished_spans() if s.name == "GET /item"]
    request_ids = {s.context.span_id for s in requests}
    waits = [s for s in lock_spans.get_finished_spans() if s.name == "lock.wait"]
    inside = [s for s in waits if s.parent is not None and s.parent.span_id in request_ids]
    print(f"{len(requests)} requests in {elapsed:.2f} s, {len(failures)} failed")
    config = tracedsync.get_config()
    if config is not None and lock_spans in config.exporters:
        print(f"{len(waits)} lock.wait spans, {len(inside)} of them inside a request span")
    if args.span_ids:
        with open(args.span_ids, "w") as f:
            json.dump([f"{i:016x}" for i in request_ids], f)
    provider.shutdown()
    return 0 if not failures and len(requests) == args.clients * args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
