"""One model shared by 8 threads gives bitwise the vectors of serial use, in both backends and w8a8.

What this pins down (see SentenceTransformer.encode's notes):

- each encode() call has its own scratch buffers, so concurrent calls cannot corrupt each other;
- the tokenizer is never reconfigured while encoding (the long-text path has its own
  untruncated copy), so a thread tokenising a long text cannot un-truncate another's batch;
- numba's pool runs on OpenMP where it is available (concurrent launches are safe); on the
  workqueue fallback, which aborts the process on concurrent parallel launches, forward
  passes hold a process-wide lock;
- a process forked after the parent used the OpenMP pool (multiprocessing's default on
  Linux) embeds on its calling thread instead of being terminated by GNU OpenMP;
- ``threads=`` changes speed, never the vectors;
- a model pickles by reference (its directory and settings), so multiprocessing's spawn and
  joblib can hand it to a worker, which embeds bitwise the same.

The model runs in a child process so that a regression (an abort inside numba) fails this test
with numba's message instead of killing the test session.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from minilm_np.tokenizer import TextTokenizer

PARAGRAPH = "The quick brown fox jumps over the lazy dog, and the dog sleeps on. "

CHILD = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import minilm_np

PARAGRAPH = sys.argv[1]
# Lengths from 3 to 256 tokens; 20,000 characters takes the long-text (prefix) path.
texts = [PARAGRAPH[: 7 * (i + 1)] + f" {i}" for i in range(30)] + [PARAGRAPH * 300, PARAGRAPH * 40, "", "ok"]
# Batches of 250 to 600 tokens: big enough for the numba kernels' parallel paths.
all_batches = [texts[i::4] for i in range(4)] + [texts[-4:], texts[5:25]]
report = {}
for backend in ("numba", "numpy", "w8a8"):
    # The numpy backend's attention is a Python loop over sequences and heads: short texts only.
    batches = [texts[i:30:3] for i in range(3)] if backend == "numpy" else all_batches
    jobs = [i % len(batches) for i in range(8 if backend == "numpy" else 16)]
    if backend == "w8a8":  # the int8 kernels' scratch (codes, row scales) is read by address
        model = minilm_np.load(backend="numba", quantize="w8a8")
    else:
        model = minilm_np.load(backend=backend)
    serial = [model.encode(batch) for batch in batches]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda j: model.encode(batches[j]), jobs))
    report[backend] = [i for i, j in enumerate(jobs) if not np.array_equal(threaded[i], serial[j])]
    report[backend + "_finite"] = bool(all(np.isfinite(s).all() for s in serial))
one = minilm_np.load(backend="numba", threads=1).encode(texts)
two = minilm_np.load(backend="numba", threads=2).encode(texts)
report["threads_1_equals_2"] = bool(np.array_equal(one, two))
print(json.dumps(report))
"""


def test_one_model_from_8_threads_matches_serial_bitwise():
    done = subprocess.run([sys.executable, "-c", CHILD, PARAGRAPH], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, f"the child process failed (rc {done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for backend in ("numba", "numpy", "w8a8"):
        assert report[backend + "_finite"]
        assert report[backend] == [], f"{backend}: threaded jobs {report[backend]} differ from serial"
    assert report["threads_1_equals_2"], "threads=1 and threads=2 give different vectors"


def test_the_tokenizer_is_thread_safe(model_dir):
    """Long texts (prefix path) and texts just under the prefix limit, tokenised from 8 threads.

    The texts under the limit tokenise to far more than 256 tokens before truncation, so
    any moment with truncation switched off would show as a too-long id list."""
    tokenizer = TextTokenizer(os.path.join(model_dir, "tokenizer.json"), 256)
    texts = [PARAGRAPH * (300 if i % 3 == 0 else 110) + str(i) for i in range(18)]
    serial = [ids.tolist() for ids in tokenizer.encode(texts)]
    assert len(PARAGRAPH * 110) < 254 * 32 and all(len(ids) == 256 for ids in serial)

    def job(k):
        return all([ids.tolist() for ids in tokenizer.encode(texts[k:] + texts[:k])] == serial[k:] + serial[:k]
                   for _ in range(3))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(job, range(16)))
    assert all(results), f"{results.count(False)} of 16 threaded jobs tokenised differently from serial"


FORK_CHILD = r"""
import json, os
import numpy as np
import minilm_np

texts = ["a forked worker embeds too " * (i % 40 + 1) for i in range(64)]  # parallel-sized batches
model = minilm_np.load(threads=2)
parent = model.encode(texts)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    same = bool(np.array_equal(model.encode(texts), parent))
    os.write(write, json.dumps({"same": same}).encode())
    os._exit(0)
os.close(write)
_, status = os.waitpid(pid, 0)
message = os.read(read, 1000).decode()
print(json.dumps({"status": status, "child": json.loads(message) if message else None}))
"""


def test_a_forked_child_embeds_after_the_parent_used_the_thread_pool():
    if not hasattr(os, "fork"):
        import pytest

        pytest.skip("no os.fork on this platform")
    done = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, f"the forked child died (wait status {report['status']}): {done.stderr[-2000:]}"
    assert report["child"] == {"same": True}


def test_a_pickled_model_loads_again_with_its_settings_and_embeds_the_same():
    import pickle

    import numpy as np

    import minilm_np

    model = minilm_np.load(threads=1, quantize="w8a8", truncate_dim=128)
    model.max_seq_length = 64
    model.prompts = {"query": "query: "}
    model.similarity_fn_name = "dot"
    texts = ["a short one", PARAGRAPH * 20]  # the second is truncated at 64 tokens
    copy = pickle.loads(pickle.dumps(model))
    assert (copy.quantization, copy.threads, copy.truncate_dim, copy.max_seq_length, copy.prompts,
            copy.similarity_fn_name) == ("w8a8", 1, 128, 64, {"query": "query: "}, "dot")
    assert np.array_equal(copy.encode(texts, prompt_name="query"), model.encode(texts, prompt_name="query"))


SPAWN_CHILD = r"""
import json, multiprocessing
import numpy as np
import minilm_np

def embed(model, texts):
    return model.encode(texts)

if __name__ == "__main__":
    texts = ["a spawned worker embeds too " * (i % 40 + 1) for i in range(16)]
    model = minilm_np.load(threads=1)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply(embed, (model, texts))
    print(json.dumps({"same": bool(np.array_equal(child, model.encode(texts)))}))
"""


def test_a_model_passed_to_a_spawned_worker_embeds_the_same(tmp_path):
    script = tmp_path / "spawn_child.py"  # spawn re-imports the main module: it must be a file
    script.write_text(SPAWN_CHILD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True}
