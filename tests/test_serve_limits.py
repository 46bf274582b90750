"""`minilm-np serve` limits, API key and shutdown: 401, 429 with Retry-After, 413, 422, SIGTERM drains.

One server process (one thread) with small limits, the API key from $MINILM_NP_API_KEY and
--no-auto-truncate; the SIGTERM test runs last and stops it.
"""
import concurrent.futures
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx")

from serve_process import running_server  # noqa: E402

KEY = "test-key-1234"
AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = " ".join(["word"] * 400)
TIMEOUT = httpx.Timeout(120.0)


@pytest.fixture(scope="module")
def server(model_dir):
    with running_server("--model", model_dir, "--max-concurrent-requests", "2", "--max-client-batch-size", "4",
                        "--payload-limit", "20000", "--no-auto-truncate", env={"MINILM_NP_API_KEY": KEY}) as process:
        yield process


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT, headers=AUTH) as client:
        yield client


def test_api_key_is_required_except_on_health_and_metrics(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = anonymous.post("/v1/embeddings", json={"model": "all-minilm", "input": "x"}, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        assert anonymous.post("/embed", json={"inputs": "x"}).json()["error_type"] == "Unhealthy"
        assert anonymous.post("/api/embed", json={"model": "all-minilm", "input": "x"}).status_code == 401
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
    assert "API key required" in next(line for line in server.lines if "listening on" in line)


def test_client_batch_size_and_payload_limits_are_413_naming_the_limit(http):
    response = http.post("/embed", json={"inputs": ["x"] * 5})
    assert response.status_code == 413 and "--max-client-batch-size of 4" in response.json()["error"]
    response = http.post("/api/embed", json={"model": "all-minilm", "input": "x" * 30000})
    assert response.status_code == 413 and "--payload-limit of 20000" in response.json()["error"]


def test_overlong_input_is_422_naming_its_tokens_unless_truncated(http, model):
    response = http.post("/v1/embeddings", json={"model": "all-minilm", "input": ["fine", LONG]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "`input[1]` has 402 tokens" in error["message"]
    response = http.post("/embed", json={"inputs": LONG, "truncate": True})
    assert response.status_code == 200
    assert np.asarray(response.json(), np.float32).tobytes() == \
        model.encode([LONG], normalize_embeddings=True).tobytes()


def test_over_max_concurrent_requests_is_429_with_retry_after(server):
    texts = [" ".join(["busy"] * 200)] * 4  # slow enough on one thread to overlap

    def call(_):
        with httpx.Client(base_url=server.url, timeout=TIMEOUT, headers=AUTH) as client:
            response = client.post("/v1/embeddings", json={"model": "all-minilm", "input": texts})
            return response.status_code, response.headers.get("retry-after"), response.json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8), timeout=300))
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
    for status, retry_after, body in results:
        if status == 429:
            assert retry_after == "1" and body["error"]["code"] == "rate_limit_exceeded"


def test_sigterm_finishes_in_flight_requests_then_exits_0(server, model):
    texts = [f"text {i} " + " ".join(["drain"] * 150) for i in range(4)]
    result = {}

    def call():
        with httpx.Client(base_url=server.url, timeout=TIMEOUT, headers=AUTH) as client:
            result["response"] = client.post("/embed", json={"inputs": texts, "normalize": False})

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 60
    while "minilm_np_requests_in_flight 1.0" not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline and caller.is_alive()
        time.sleep(0.005)
    assert server.terminate() == 0
    caller.join(60)
    response = result["response"]
    assert response.status_code == 200
    assert np.asarray(response.json(), np.float32).tobytes() == model.encode(texts).tobytes()
