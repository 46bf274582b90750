"""sentence-transformers drop-in: one script, run with their classes and with ours, same outputs.

:func:`run` is written as a sentence-transformers user writes it; it only converts what it
gets back with ``np.asarray`` (sentence-transformers returns torch tensors where minilm-np
returns numpy arrays: ``similarity``, ``tokenize``, ``token_embeddings``, the cos_sim /
dot_score helpers and ``convert_to_numpy=False``). Everything else is compared as returned.
"""
import io
import sys
import warnings

import numpy as np
import pytest

from conftest import HAVE_ST

# fp32 parity bounds: embeddings as in test_parity.py; similarities derived from them.
EMBEDDING_ABS = 2e-6
TOKEN_ABS = 1e-5          # token embeddings are not normalised: |values| up to ~2, as test_parity's hidden states
SCORE_ABS = 5e-6          # cosine, dot of unit vectors, euclidean distance
MANHATTAN_ABS = 2e-4      # a sum of 384 coordinate differences, each within EMBEDDING_ABS
TIE = 1e-5                # scores closer than this may legitimately rank either way

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome.",
    "The new movie is so great!",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "",
    "Un café crème, s'il vous plaît.",
    " ".join(["A long sentence that goes on."] * 12),  # past max_seq_length = 16 below
]
QUERIES = ["A man is eating pasta.", "Someone is playing an instrument.", "password recovery"]


def run(SentenceTransformer, util, model_dir):
    """Every listed drop-in call; returns name -> numpy result (or plain Python structure)."""
    out = {}
    model = SentenceTransformer(model_dir, device="cpu")
    with warnings.catch_warnings():  # sentence-transformers 6 renamed it (FutureWarning); the old name works
        warnings.simplefilter("ignore", FutureWarning)
        out["dimension"] = model.get_sentence_embedding_dimension()
    out["max_seq_length"] = model.max_seq_length
    out["similarity_fn_name"] = model.similarity_fn_name

    emb = model.encode(SENTENCES, batch_size=4)
    out["encode"] = emb
    out["encode_one"] = model.encode(SENTENCES[0])
    out["encode_progress"] = model.encode(SENTENCES, batch_size=8, show_progress_bar=True)
    out["encode_list"] = np.stack([np.asarray(v) for v in model.encode(SENTENCES[:4], convert_to_numpy=False)])
    out["token_embeddings"] = [np.asarray(t) for t in model.encode(SENTENCES[:4], output_value="token_embeddings")]
    out["normalized"] = model.encode(SENTENCES, normalize_embeddings=True)
    out["truncated"] = model.encode(SENTENCES, truncate_dim=64)
    out["truncated_normalized"] = model.encode(SENTENCES, truncate_dim=64, normalize_embeddings=True)

    for name in ("cosine", "dot", "euclidean", "manhattan"):
        model.similarity_fn_name = name
        out[f"similarity_{name}"] = np.asarray(model.similarity(emb[:5], emb))
        out[f"similarity_pairwise_{name}"] = np.asarray(model.similarity_pairwise(emb[:5], emb[5:10]))
    model.similarity_fn_name = "cosine"

    out["tokenize"] = np.asarray(model.tokenize(SENTENCES)["input_ids"])
    model.max_seq_length = 16
    out["max_seq_length_set"] = model.max_seq_length
    out["tokenize_16"] = np.asarray(model.tokenize(SENTENCES)["input_ids"])
    out["encode_16"] = model.encode(SENTENCES)
    model.max_seq_length = 256

    truncating = SentenceTransformer(model_dir, device="cpu", truncate_dim=32)
    out["truncate_dim_model_dimension"] = truncating.get_embedding_dimension()
    out["truncate_dim_model"] = truncating.encode(SENTENCES[:4])

    queries = model.encode(QUERIES)
    out["cos_sim"] = np.asarray(util.cos_sim(queries, emb))
    out["dot_score"] = np.asarray(util.dot_score(queries, emb))
    out["semantic_search"] = util.semantic_search(queries, emb, top_k=4)
    out["semantic_search_chunked"] = util.semantic_search(queries, emb, query_chunk_size=2, corpus_chunk_size=5,
                                                          top_k=4)
    out["semantic_search_dot"] = util.semantic_search(queries, emb, top_k=3, score_function=util.dot_score)
    out["paraphrase_mining"] = util.paraphrase_mining(model, SENTENCES, top_k=2)
    out["paraphrase_mining_chunked"] = util.paraphrase_mining(model, SENTENCES, top_k=3, max_pairs=6,
                                                              query_chunk_size=5, corpus_chunk_size=7)
    return out


@pytest.fixture(scope="module")
def results(model_dir):
    if not HAVE_ST:
        pytest.skip("sentence-transformers is not installed")
    import sentence_transformers
    import sentence_transformers.util as st_util

    import minilm_np
    import minilm_np.util

    stderr, sys.stderr = sys.stderr, io.StringIO()  # both show a progress bar in run()
    try:
        theirs = run(sentence_transformers.SentenceTransformer, st_util, model_dir)
        ours = run(minilm_np.SentenceTransformer, minilm_np.util, model_dir)
    finally:
        sys.stderr = stderr
    return ours, theirs


ARRAYS = {
    "encode": EMBEDDING_ABS, "encode_one": EMBEDDING_ABS, "encode_progress": EMBEDDING_ABS,
    "encode_list": EMBEDDING_ABS, "normalized": EMBEDDING_ABS, "truncated": EMBEDDING_ABS,
    "truncated_normalized": EMBEDDING_ABS, "encode_16": EMBEDDING_ABS, "truncate_dim_model": EMBEDDING_ABS,
    "similarity_cosine": SCORE_ABS, "similarity_dot": SCORE_ABS, "similarity_euclidean": SCORE_ABS,
    "similarity_manhattan": MANHATTAN_ABS, "similarity_pairwise_cosine": SCORE_ABS,
    "similarity_pairwise_dot": SCORE_ABS, "similarity_pairwise_euclidean": SCORE_ABS,
    "similarity_pairwise_manhattan": MANHATTAN_ABS, "cos_sim": SCORE_ABS, "dot_score": SCORE_ABS,
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_arrays_match(name, results):
    ours, theirs = results
    got, want = ours[name], np.asarray(theirs[name])
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, name
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    diff = float(np.abs(got - want).max())
    assert diff <= ARRAYS[name], f"{name}: max abs diff {diff:.3g} > {ARRAYS[name]}"


def test_scalars_and_token_ids_match(results):
    ours, theirs = results
    for name in ("dimension", "max_seq_length", "similarity_fn_name", "max_seq_length_set",
                 "truncate_dim_model_dimension"):
        assert ours[name] == theirs[name], name
    assert ours["truncate_dim_model_dimension"] == 32 and ours["max_seq_length_set"] == 16
    for name in ("tokenize", "tokenize_16"):
        assert ours[name].dtype == np.int64
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert ours["tokenize_16"].shape[1] == 16


def test_token_embeddings_match(results):
    ours, theirs = results
    assert len(ours["token_embeddings"]) == len(theirs["token_embeddings"]) == 4
    for i, (got, want) in enumerate(zip(ours["token_embeddings"], theirs["token_embeddings"])):
        assert got.shape == want.shape and got.shape[1] == 384, f"text {i}"
        assert float(np.abs(got - want).max()) <= TOKEN_ABS, f"text {i}"


def untied_ranks(scores):
    """Ranks whose score is more than TIE away from its neighbours' (their order is well defined)."""
    return [r for r, s in enumerate(scores)
            if all(abs(s - other) > TIE for k, other in enumerate(scores) if k != r)]


@pytest.mark.parametrize("name", ["semantic_search", "semantic_search_chunked", "semantic_search_dot"])
def test_semantic_search_matches(name, results):
    ours, theirs = results
    assert len(ours[name]) == len(theirs[name]) == len(QUERIES)
    for q, (got, want) in enumerate(zip(ours[name], theirs[name])):
        assert len(got) == len(want), f"query {q}"
        assert all(set(hit) == {"corpus_id", "score"} and isinstance(hit["score"], float) for hit in got)
        for r in untied_ranks([h["score"] for h in want]):
            assert got[r]["corpus_id"] == want[r]["corpus_id"], f"query {q}, rank {r}"
        assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want)) <= SCORE_ABS, f"query {q}"
    for got, want in zip(ours["semantic_search_chunked"], ours["semantic_search"]):  # chunking changes nothing
        assert [h["corpus_id"] for h in got] == [h["corpus_id"] for h in want]
        assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want)) <= 1e-6


@pytest.mark.parametrize("name", ["paraphrase_mining", "paraphrase_mining_chunked"])
def test_paraphrase_mining_matches(name, results):
    ours, theirs = results
    got, want = ours[name], theirs[name]
    assert len(got) == len(want) > 0
    assert all(i < j for _, i, j in got)
    for r in untied_ranks([s for s, _, _ in want]):
        assert got[r][1:] == want[r][1:], f"rank {r}: {got[r]} != {want[r]}"
    assert max(abs(g[0] - w[0]) for g, w in zip(got, want)) <= SCORE_ABS


def test_progress_bar_counts_texts(model, capsys):
    """show_progress_bar=True: a tqdm bar on stderr counted in texts; None: none when stderr is not a tty."""
    model.encode(SENTENCES, batch_size=2, show_progress_bar=True)
    err = capsys.readouterr().err
    assert f"{len(SENTENCES)}/{len(SENTENCES)}" in err and "text" in err
    model.encode(iter(SENTENCES[:3]), show_progress_bar=True)  # no length: a counter without a total
    assert "3text" in capsys.readouterr().err.replace(" ", "")
    model.encode(SENTENCES[:3])
    model.encode(SENTENCES[:3], show_progress_bar=False)
    assert capsys.readouterr().err == ""


def test_differences_are_explicit(model):
    """What sentence-transformers accepts and minilm-np refuses says so, instead of silently differing."""
    with pytest.raises(ValueError, match="convert_to_tensor"):
        model.encode(["a"], convert_to_tensor=True)
    with pytest.raises(ValueError, match="precision"):
        model.encode(["a"], precision="int8")
    with pytest.raises(TypeError, match="unsupported keyword"):
        model.encode(["a"], no_such_option=1)
    with pytest.raises(ValueError, match="similarity_fn_name"):
        model.similarity_fn_name = "maxsim"
    with pytest.raises(ValueError, match="prompt_name 'query'"):
        model.encode(["a"], prompt_name="query")


def test_prompt_is_prepended(model):
    np.testing.assert_array_equal(model.encode(["query: what is it"]), model.encode(["what is it"], prompt="query: "))
