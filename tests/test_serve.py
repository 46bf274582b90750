"""`minilm-np serve` called by real clients (openai, ollama, LangChain, httpx) on a real server.

One server process for the module (one thread), on a free loopback port; every vector is
compared bitwise with ``encode()`` of the same texts in this process.
"""
import base64
import concurrent.futures
import json
import re

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx")

from serve_process import running_server  # noqa: E402

NAME = "test-embedder"
TEXTS = ["A man is eating food.", "  Un café, s'il vous plaît. ", "How do I reset my password?", "🙂 emoji",
         " ".join(["a long text"] * 200)]  # past max_seq_length: cut, as encode() cuts it
LONG = " ".join(["word"] * 400)
TIMEOUT = httpx.Timeout(120.0)


@pytest.fixture(scope="module")
def server(model_dir):
    with running_server("--model", model_dir, "--served-model-name", NAME) as process:
        yield process
        assert process.terminate() == 0


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT, limits=httpx.Limits(max_connections=16)) as client:
        yield client


def same(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def test_startup_line_names_address_model_mode_threads(server):
    banner = next(line for line in server.lines if "listening on" in line)
    assert re.search(rf"http://127\.0\.0\.1:\d+ \(model {NAME}, fp32, 1 threads, numba backend\)", banner), banner


# --- OpenAI -------------------------------------------------------------------------------------

def test_openai_sdk_base64_and_float_are_encode_bitwise(server, model):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    expected = model.encode(TEXTS)
    default = client.embeddings.create(model=NAME, input=TEXTS)  # the SDK asks for base64
    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    assert same([d.embedding for d in default.data], expected)
    assert same([d.embedding for d in floats.data], expected)
    assert [d.index for d in floats.data] == list(range(len(TEXTS))) and floats.model == "all-MiniLM-L6-v2"
    tokens = sum(len(ids) for ids in model._tokenizer.encode(TEXTS))
    assert default.usage.prompt_tokens == default.usage.total_tokens == tokens
    one = client.embeddings.create(model=NAME, input="A man is eating food.", dimensions=64)
    assert same(one.data[0].embedding, model.encode("A man is eating food.", truncate_dim=64,
                                                    normalize_embeddings=True))
    assert NAME in [m.id for m in client.models.list().data]


def test_langchain_openai_embeddings_are_encode_bitwise(server, model):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model=NAME, base_url=server.url + "/v1", api_key="unused",
                                  check_embedding_ctx_length=False, max_retries=0)
    assert same(embeddings.embed_documents(TEXTS), model.encode(TEXTS))
    assert same(embeddings.embed_query("a query"), model.encode("a query"))


def test_openai_errors_have_openai_shape(http):
    def error(body, status, path="/v1/embeddings", **kwargs):
        response = http.post(path, content=body, **kwargs) if isinstance(body, (str, bytes)) else \
            http.post(path, json=body, **kwargs)
        assert response.status_code == status, response.text
        detail = response.json()["error"]
        assert set(detail) == {"message", "type", "param", "code"}
        return detail

    assert "not valid JSON" in error("{not json", 400)["message"]
    assert "JSON object" in error("[1, 2]", 400)["message"]
    assert error({"model": "nope", "input": "x"}, 404)["code"] == "model_not_found"
    assert error({"input": "x"}, 400)["param"] == "model"
    assert "token ids" in error({"model": NAME, "input": [[101, 2023, 102]]}, 400)["message"]
    assert "token ids" in error({"model": NAME, "input": [101, 2023]}, 400)["message"]
    assert error({"model": NAME, "input": 3}, 400)["param"] == "input"
    assert error({"model": NAME, "input": ""}, 400)["param"] == "input"
    assert error({"model": NAME, "input": []}, 400)["param"] == "input"
    assert error({"model": NAME, "input": "x", "encoding_format": "int8"}, 400)["param"] == "encoding_format"
    assert error({"model": NAME, "input": "x", "dimensions": 385}, 400)["param"] == "dimensions"
    assert error({"model": NAME, "input": "x", "dimensions": True}, 400)["param"] == "dimensions"
    too_many = error({"model": NAME, "input": ["x"] * 2049}, 413)
    assert "2049" in too_many["message"] and "2048" in too_many["message"]
    big = error(json.dumps({"model": NAME, "input": "x" * 2_100_000}), 413)
    assert big["code"] == "payload_too_large" and "2000000" in big["message"]


# --- Ollama -------------------------------------------------------------------------------------

def test_ollama_sdk_embed_and_embeddings(server, model):
    import ollama

    client = ollama.Client(host=server.url, timeout=120)
    result = client.embed(model="all-minilm", input=TEXTS)
    assert same(result.embeddings, model.encode(TEXTS, normalize_embeddings=True))
    assert result.prompt_eval_count == sum(len(ids) for ids in model._tokenizer.encode(TEXTS))
    assert result.total_duration > 0
    single = client.embed(model="all-minilm:latest", input="one text", dimensions=32)
    assert same(single.embeddings, model.encode(["one text"], truncate_dim=32, normalize_embeddings=True))
    old = client.embeddings(model=NAME, prompt="one text")
    assert same(old.embedding, model.encode("one text"))
    assert client.embed(model=NAME, input=[]).embeddings == []
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model="llama3", input="x")
    assert info.value.status_code == 404 and "not found" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model=NAME, input=LONG, truncate=False)
    assert info.value.status_code == 400 and info.value.error == "the input length exceeds the context length"
    assert same(client.embed(model=NAME, input=LONG).embeddings, model.encode([LONG], normalize_embeddings=True))
    listed = client.list().models
    assert listed[0].model == f"{NAME}:latest" and listed[0].details.family == "bert"


def test_ollama_errors_have_ollama_shape(http):
    for body, status in (("{", 400), ({"input": "x"}, 400), ({"model": NAME, "input": {"a": 1}}, 400),
                         ({"model": NAME, "input": "x", "truncate": "yes"}, 400)):
        response = http.post("/api/embed", **({"content": body} if isinstance(body, str) else {"json": body}))
        assert response.status_code == status and set(response.json()) == {"error"}, response.text
    assert http.get("/api/version").json()["version"]


# --- TEI ----------------------------------------------------------------------------------------

def test_tei_embed_similarity_tokenize_info_health(http, model):
    response = http.post("/embed", json={"inputs": TEXTS})
    assert response.status_code == 200 and same(response.json(), model.encode(TEXTS, normalize_embeddings=True))
    raw = http.post("/embed", json={"inputs": "one text", "normalize": False, "dimensions": 16}).json()
    assert same(raw, model.encode(["one text"], truncate_dim=16))
    scores = http.post("/similarity", json={"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]}}).json()
    vectors = model.encode(TEXTS, normalize_embeddings=True)
    assert same(scores, vectors[1:] @ vectors[0])
    tokens = http.post("/tokenize", json={"inputs": "Hello world"}).json()
    assert [t["text"] for t in tokens[0]] == ["[CLS]", "hello", "world", "[SEP]"]
    assert tokens[0][0]["special"] and tokens[0][1]["start"] == 0 and tokens[0][1]["stop"] == 5
    info = http.get("/info").json()
    assert info["model_id"] == NAME and info["max_input_length"] == model.max_seq_length
    assert http.get("/health").status_code == 200


def test_tei_errors_have_tei_shape(http):
    def error(body, status):
        response = http.post("/embed", **({"content": body} if isinstance(body, str) else {"json": body}))
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "error_type"}
        return response.json()

    assert error("{", 400)["error_type"] == "Validation"
    assert error({"inputs": []}, 422)["error_type"] == "Empty"
    assert error({"inputs": 1}, 422)["error_type"] == "Validation"
    assert error({"inputs": "x", "normalize": "no"}, 422)["error_type"] == "Validation"
    assert error({"inputs": "x", "prompt_name": "query"}, 422)["error_type"] == "Validation"
    too_long = error({"inputs": ["ok", LONG], "truncate": False}, 422)
    assert re.search(r"`inputs\[1\]` has 40\d tokens, more than the model's maximum of 256", too_long["error"])
    assert http.post("/rerank", json={"query": "q", "texts": ["a"]}).status_code == 400  # no rerank model


# --- batching, metrics --------------------------------------------------------------------------

def test_concurrent_requests_are_coalesced_and_each_is_encode_bitwise(server, http, model):
    requests = [[f"request {i} text {j} " * (1 + (i * j) % 7) for j in range(1 + i % 4)] for i in range(32)]
    expected = [model.encode(texts) for texts in requests]

    def call(texts):
        response = http.post("/v1/embeddings", json={"model": NAME, "input": texts, "encoding_format": "float"})
        return [d["embedding"] for d in response.json()["data"]]

    before = _metric(server, "minilm_np_batch_requests_count")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:  # one client: httpx's pool is thread-safe
        results = list(pool.map(call, requests, timeout=300))
    assert all(same(got, want) for got, want in zip(results, expected))
    batches = _metric(server, "minilm_np_batch_requests_count") - before
    assert batches < len(requests)  # some batches served several requests


def _metric(server, name, labels=""):
    text = httpx.get(server.url + "/metrics", timeout=TIMEOUT).text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_by_route_and_status(server, http):
    http.post("/embed", json={"inputs": []})
    text = http.get("/metrics").text
    assert 'minilm_np_requests_total{route="/embed",status="422"}' in text
    assert 'minilm_np_requests_total{route="/v1/embeddings",status="200"}' in text
    for name in ("minilm_np_request_duration_seconds_bucket", "minilm_np_queue_duration_seconds_bucket",
                 "minilm_np_tokens_total", "minilm_np_batch_texts_bucket", "minilm_np_batch_tokens_bucket",
                 "minilm_np_queue_depth", "minilm_np_requests_in_flight"):
        assert name in text, name


def test_unknown_route_is_404(http):
    assert http.post("/v2/embeddings", json={}).status_code == 404


def test_create_app_mounts_in_another_asgi_app(model):
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from minilm_np.serve import create_app

    outer = Starlette(routes=[Mount("/embedding", create_app(model, warmup=False))])
    with TestClient(outer) as client:
        response = client.post("/embedding/v1/embeddings", json={"model": "all-minilm", "input": TEXTS[:2],
                                                                 "encoding_format": "base64"})
    assert response.status_code == 200
    little_endian_f32 = base64.b64decode(response.json()["data"][1]["embedding"])
    assert little_endian_f32 == model.encode(TEXTS[1]).astype("<f4").tobytes()
