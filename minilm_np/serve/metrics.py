"""Prometheus metrics of one server: requests, latencies, tokens, batch sizes, queue depth."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    """The server's metrics, in a registry of its own (two apps in one process never clash)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("minilm_np_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("minilm_np_request_duration_seconds", "Time from request to response, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_latency = Histogram("minilm_np_queue_duration_seconds",
                                       "Time a request's texts waited for the batch worker",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("minilm_np_tokens", "Tokens embedded (after truncation, specials included)",
                              registry=r)
        self.batch_texts = Histogram("minilm_np_batch_texts", "Texts in each coalesced batch",
                                     buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("minilm_np_batch_tokens", "Tokens in each coalesced batch",
                                      buckets=SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("minilm_np_batch_requests", "Requests in each coalesced batch",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.queue_depth = Gauge("minilm_np_queue_depth", "Requests waiting for the batch worker", registry=r)
        self.in_flight = Gauge("minilm_np_requests_in_flight", "Requests being handled", registry=r)

    def request(self, route, status, seconds):
        """Count one answered request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, texts, tokens, waits):
        """Record one coalesced batch; ``waits`` is each request's queue time in seconds."""
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.batch_requests.observe(len(waits))
        for wait in waits:
            self.queue_latency.observe(wait)

    def response(self):
        """The Prometheus text exposition."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
