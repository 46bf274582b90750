"""Our safetensors reader against the ``safetensors`` library, on seeded corruptions of real files.

Contract (issue 31): whenever ``safetensors.safe_open`` refuses a file, ``read_safetensors``
refuses it with a ModelFileError naming the file; whenever both accept it, the tensors are
byte-identical; and a model directory whose file we accept loads and embeds to finite vectors
or fails with a typed error -- never a NaN vector, a crash or a hang.

Files: small random ones written by the library, a tiny float32 BERT, the int8 directory that
``minilm-np quantize`` writes from it, and (a few mutations) the real all-MiniLM-L6-v2.
``MINILM_NP_MUTATIONS`` sets the number of mutations (default 120, a few seconds; the long run
uses 2,000 or more: ``MINILM_NP_MUTATIONS=2000 pytest -s tests/test_safetensors_differential.py``),
``MINILM_NP_MUTATION_SEED`` the first seed.
"""
import collections
import os
import random
import time

import numpy as np
import pytest

import minilm_np
from minilm_np import finite
from minilm_np.errors import ModelFileError, NonFiniteOutputError, UnsupportedModelError
from model_dirs import make_model_dir, random_bert_tensors, safetensors_bytes, tiny_config
from safetensors_mutations import compare, mutate, random_safetensors, write_chunks

MUTATIONS = int(os.environ.get("MINILM_NP_MUTATIONS", "120"))
FIRST_SEED = int(os.environ.get("MINILM_NP_MUTATION_SEED", "0"))
# share of the mutations per base file; the real 90 MB file costs ~0.2 s a mutation
SHARES = {"random": 0.35, "tiny-f32": 0.3, "tiny-int8": 0.3, "real-f32": 0.05}
# model loads (each ~0.3 s) for accepted mutations per base, in the default run
LOADS_PER_BASE = None if MUTATIONS >= 1000 else 3
TEXTS = ["hello world", "a second text"]


@pytest.fixture(autouse=True)
def fresh_records(tmp_path, monkeypatch):
    """Records of files found finite go to a tmp dir: every corrupted file is scanned."""
    monkeypatch.setattr(finite, "record_dir", lambda: str(tmp_path / "records"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory, model_dir):
    """Base kind -> (model directory or None, bytes of a well-formed file or None for random files)."""
    from minilm_np.quantize import write_quantized

    root = tmp_path_factory.mktemp("bases")
    tiny = make_model_dir(root / "tiny", model_dir, config=tiny_config(),
                          tensors=random_bert_tensors(tiny_config()))
    int8 = write_quantized(tiny, "w8a8", str(root / "tiny-int8"))
    with open(os.path.join(tiny, "model.safetensors"), "rb") as f:
        tiny_bytes = f.read()
    with open(os.path.join(int8, "model.safetensors"), "rb") as f:
        int8_bytes = f.read()
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        real_bytes = f.read()
    return {"random": (None, None), "tiny-f32": (tiny, tiny_bytes), "tiny-int8": (int8, int8_bytes),
            "real-f32": (model_dir, real_bytes)}


def model_copy(source_dir, target):
    """A directory with ``source_dir``'s files linked, except model.safetensors (written per mutation)."""
    os.makedirs(target)
    for name in os.listdir(source_dir):
        if name != "model.safetensors":
            os.symlink(os.path.join(source_dir, name), os.path.join(target, name))
    return str(target)


def embed_or_typed_error(directory):
    """``"vectors"`` (all finite, else AssertionError) or the name of the typed error the load or encode raised."""
    try:
        vectors = minilm_np.load(directory, backend="numpy").encode(TEXTS)
    except (ModelFileError, UnsupportedModelError, NonFiniteOutputError) as error:
        return type(error).__name__
    assert np.isfinite(vectors).all(), "a NaN vector was returned"
    return "vectors"


@pytest.mark.parametrize("kind", list(SHARES))
def test_never_more_lenient_than_safetensors(kind, bases, tmp_path):
    source_dir, raw = bases[kind]
    count = max(3, round(MUTATIONS * SHARES[kind]))
    directory = model_copy(source_dir, tmp_path / "model") if source_dir else str(tmp_path)
    path = os.path.join(directory, "model.safetensors")
    outcomes, loads, slowest = collections.Counter(), collections.Counter(), (0.0, "")
    for seed in range(FIRST_SEED, FIRST_SEED + count):
        rng = random.Random(f"{kind}-{seed}")
        chunks, what = mutate(raw if raw is not None else random_safetensors(rng), rng)
        write_chunks(path, chunks)
        start = time.perf_counter()
        verdict = compare(path)
        slowest = max(slowest, (time.perf_counter() - start, what))
        assert verdict["violation"] is None, f"{kind} seed {seed} ({what}): {verdict['violation']}"
        outcomes[f"theirs {verdict['theirs']}, ours {verdict['ours']}"] += 1
        if what.startswith("non-finite float in") and "; then" not in what:  # the library accepts these
            assert verdict["ours"] == "refuse" and what.split(" in ")[1].split(" at byte")[0] in verdict["error"], \
                verdict["error"]
        if source_dir and verdict["ours"] == "accept" and (LOADS_PER_BASE is None or
                                                            sum(loads.values()) < LOADS_PER_BASE):
            loads[embed_or_typed_error(directory)] += 1
    print(f"\n{kind}: {count} mutations (seeds {FIRST_SEED}..{FIRST_SEED + count - 1}): {dict(outcomes)}; "
          f"loads of accepted files: {dict(loads)}; slowest {slowest[0] * 1e3:.0f} ms ({slowest[1]})")
    assert outcomes["theirs refuse, ours refuse"] > 0  # the mutations do break files


def test_the_header_length_one_byte_short_is_refused(tmp_path, model_dir):
    """The case of issue 31: the JSON still parses (it ends in padding) but a byte of data is unclaimed."""
    import struct

    tensors = random_bert_tensors(tiny_config())
    raw = safetensors_bytes(tensors)
    (n,) = struct.unpack("<Q", raw[:8])
    assert raw[8 + n - 1:8 + n] == b" "
    directory = make_model_dir(tmp_path / "model", model_dir, config=tiny_config())
    write_chunks(os.path.join(directory, "model.safetensors"), [struct.pack("<Q", n - 1), raw[8:]])
    with pytest.raises(ModelFileError, match=r"model\.safetensors: the tensors cover \d+ of the \d+ data bytes, "
                                             r"leaving 1 at the end: the header length is wrong"):
        minilm_np.load(directory, backend="numpy")
