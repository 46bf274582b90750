"""`minilm-np serve --rerank-model`: TEI's /rerank and the Cohere-shaped /v1/rerank against
``minilm_np.CrossEncoder`` in this process (a random one-label BERT cross-encoder)."""
import numpy as np
import pytest

import minilm_np

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx")
pytest.importorskip("transformers", reason="building the test cross-encoder needs transformers")

from serve_process import running_server  # noqa: E402

QUERY = "how do I reset my password"
DOCS = ["Click 'forgot password' on the sign-in page.", "Our office opens at nine.", "Passwords expire yearly.",
        "The cafeteria serves lunch at noon."]
TIMEOUT = httpx.Timeout(120.0)


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory, model_dir):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("reranker")
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).eval().save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def server(model_dir, reranker_dir):
    with running_server("--model", model_dir, "--rerank-model", reranker_dir) as process:
        yield process
        assert process.terminate() == 0


@pytest.fixture(scope="module")
def cross_encoder(reranker_dir):
    return minilm_np.CrossEncoder(reranker_dir, threads=1)


def test_tei_rerank_is_predict_best_first(server, cross_encoder):
    pairs = [(QUERY, doc) for doc in DOCS]
    scores = cross_encoder.predict(pairs)
    raw = cross_encoder.predict(pairs, activation_fn=lambda logits: logits)
    order = np.argsort(-scores, kind="stable")
    result = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True},
                        timeout=TIMEOUT).json()
    assert [r["index"] for r in result] == order.tolist()
    assert np.asarray([r["score"] for r in result], np.float32).tobytes() == scores[order].tobytes()
    assert [r["text"] for r in result] == [DOCS[i] for i in order]
    result = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True},
                        timeout=TIMEOUT).json()
    assert np.asarray([r["score"] for r in result], np.float32).tobytes() == raw[order].tobytes()


def test_cohere_rerank_top_n_and_documents(server, cross_encoder):
    scores = cross_encoder.predict([(QUERY, doc) for doc in DOCS])
    order = np.argsort(-scores, kind="stable")[:2]
    body = httpx.post(server.url + "/v1/rerank", json={"query": QUERY, "documents": [{"text": d} for d in DOCS],
                                                       "top_n": 2, "return_documents": True}, timeout=TIMEOUT).json()
    assert [r["index"] for r in body["results"]] == order.tolist()
    assert [r["document"]["text"] for r in body["results"]] == [DOCS[i] for i in order]
    assert np.asarray([r["relevance_score"] for r in body["results"]], np.float32).tobytes() == \
        scores[order].tobytes()
    response = httpx.post(server.url + "/v1/rerank", json={"query": QUERY, "documents": []}, timeout=TIMEOUT)
    assert response.status_code == 400 and set(response.json()) == {"message"}
