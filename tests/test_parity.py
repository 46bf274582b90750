"""Parity with sentence-transformers: committed goldens (no torch needed) and live comparisons."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import needs_st, needs_torch

MAX_ABS = 2e-6
MIN_COS = 0.999999


def parity_figures(got, want):
    cos = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
    return float(np.abs(got - want).max()), float(cos.min())


def test_token_ids_match_golden(model, parity_corpus, golden):
    ids = model._tokenizer.encode(parity_corpus)
    for i, (got, want) in enumerate(zip(ids, golden["token_ids"])):
        assert list(got) == list(want), f"text {i} ({parity_corpus[i][:40]!r}) tokenises differently"


@pytest.mark.parametrize("which", ["model", "numpy_model"])
def test_embeddings_match_golden(which, parity_corpus, golden, request):
    m = request.getfixturevalue(which)
    got = m.encode(parity_corpus)
    max_abs, min_cos = parity_figures(got, golden["embeddings"])
    print(f"{m.backend}: max abs diff {max_abs:.3g}, min cosine {min_cos:.9f} over {len(got)} texts")
    assert max_abs <= MAX_ABS and min_cos >= MIN_COS


def test_pooled_embeddings_match_golden(model, parity_corpus, golden):
    from minilm_np.model import Batch, forward, RunState

    ids = model._tokenizer.encode(parity_corpus)
    batch = Batch.pack(ids)
    tokens = forward(model.config, model.weights, batch, model.kernels, RunState(model.config, batch.n_tokens))
    pooled = model.head.pooling(tokens, batch.cu_seqlens, model.kernels)
    # before normalisation the vectors' norms reach ~9: the bound is relative to each vector's norm
    norms = np.linalg.norm(golden["pooled"], axis=1, keepdims=True)
    assert (np.abs(pooled - golden["pooled"]) / norms).max() <= MAX_ABS


@needs_torch
def test_hidden_states_match_transformers(model, model_dir, parity_corpus):
    import torch
    from transformers import BertModel

    from minilm_np.model import Batch, hidden_states

    bert = BertModel.from_pretrained(model_dir).eval()
    texts = parity_corpus[::7]
    ids = model._tokenizer.encode(texts)
    ours = hidden_states(model.config, model.weights, Batch.pack(ids), model.kernels)
    worst = 0.0
    for i, seq in enumerate(ids):
        with torch.no_grad():
            out = bert(input_ids=torch.from_numpy(seq[None]), output_hidden_states=True)
        start = sum(len(s) for s in ids[:i])
        for layer, theirs in enumerate(out.hidden_states):
            diff = np.abs(ours[layer][start:start + len(seq)] - theirs[0].numpy()).max()
            worst = max(worst, float(diff))
    print(f"hidden states: max abs diff {worst:.3g} over {len(ids)} texts and {len(ours)} layers")
    assert worst <= 1e-4


@needs_st
@pytest.mark.parametrize("which", ["model", "numpy_model"])
def test_live_parity_on_corpus(which, st_model, parity_corpus, request):
    m = request.getfixturevalue(which)
    want = st_model.encode(parity_corpus, batch_size=32, convert_to_numpy=True)
    max_abs, min_cos = parity_figures(m.encode(parity_corpus), want)
    assert max_abs <= MAX_ABS and min_cos >= MIN_COS


@needs_st
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(st.characters(codec="utf-8"), max_size=300), min_size=1, max_size=4))
def test_live_parity_hypothesis(model, st_model, texts):
    want = st_model.encode(texts, convert_to_numpy=True)
    assert [list(x) for x in model._tokenizer.encode(texts)] == \
        [list(r[m == 1]) for r, m in zip(st_model.tokenize(texts)["input_ids"].numpy(),
                                          st_model.tokenize(texts)["attention_mask"].numpy())]
    max_abs, min_cos = parity_figures(model.encode(texts), want)
    assert max_abs <= MAX_ABS and min_cos >= MIN_COS


def test_no_torch_imported(model_dir):
    code = ("import sys, minilm_np; assert 'torch' not in sys.modules; "
            f"minilm_np.load({model_dir!r}).encode('hi'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', "
            "'sentence_transformers')); print(bad); assert not bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
