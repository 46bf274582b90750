"""The x86 code paths a user's CPU may take, and the check run on each (``python tests/isa_paths.py OUT``).

Each path is a set of environment variables that makes this process compile and run the kernels a
less capable CPU gets: numba's code-generation target (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``,
which ``kernels.cpu.cpu_has`` honours) and the kernels' own switches. Run as a script under one
path, it checks the numba kernels against their numpy twins, checks that every text's vector is
bitwise the same alone and in batches of several sizes (fp32, w8a16, w8a8), and writes the vectors
and the path it actually took to ``OUT`` (an ``.npz``) for :mod:`test_isa_paths` to compare across
paths.
"""
import json
import math
import os
import sys

# A plain AVX2 + FMA CPU (Haswell, and what numba targets on AMD Zen 2 / Zen 3): 8-lane float32
# tiles and softmax rows, int8 products with vpmaddubsw / vpmaddwd (no VNNI).
HASWELL_FEATURES = "+64bit,+avx,+avx2,+fma,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+f16c,+bmi,+bmi2,+cx16"

# name: (environment, host CPU features the path needs, the int8 path it must report)
PATHS = {
    "native": ({}, (), None),  # the portable tier of this CPU (kernels._cache.portable_target)
    "host-exact": ({"MINILM_NP_TARGET": "host"}, (), None),  # numba's own target: this CPU's exact model
    "avx2": ({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL_FEATURES}, ("avx2", "fma"), "avx2"),
    "avx-vnni": ({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL_FEATURES + ",+avxvnni"},
                 ("avx2", "fma", "avxvnni"), "avx-vnni"),
    "avx512-no-amx": ({"MINILM_NP_AMX": "0"}, ("avx512f", "avx512vnni", "amx-int8"), "avx512-vnni"),
    "portable-int8": ({"MINILM_NP_INT8_AVX2": "0"}, (), "portable"),
}

MODES = (None, "w8a16", "w8a8")


def host_lacks(features):
    """The features in ``features`` (LLVM's names) that this machine's CPU does not have."""
    from llvmlite import binding

    host = binding.get_host_cpu_features()
    return [feature for feature in features if not host.get(feature, False)]


def _int8_path(cpu):
    if not cpu.ISA.int8_vector:
        return "portable"
    if cpu.ISA.amx:
        return "amx"
    return "avx512-vnni" if cpu.VNNI512 else "avx-vnni" if cpu.VNNI else "avx2"


def _check_twins():
    import numpy as np

    from minilm_np.kernels import int8_gemm, jit, reference, sgemm

    rng = np.random.default_rng(0)
    for m, n, k in [(1, 40, 24), (13, 70, 90), (40, 384, 384), (9, 1536, 384), (20, 384, 1536)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        packed = sgemm.pack_weights(w)
        for gelu in (False, True):
            np.testing.assert_allclose(sgemm.gemm(a, packed, n, bias, gelu=gelu),
                                       sgemm.gemm_reference(a, packed, n, bias, gelu=gelu),
                                       rtol=1e-5, atol=1e-5 * math.sqrt(k), err_msg=f"sgemm {m}x{n}x{k}")
        wq = rng.integers(-127, 128, (n, k)).astype(np.int8)
        a8 = rng.integers(0, 128, (m, k)).astype(np.uint8)
        a16 = rng.integers(-8192, 8192, (m, k)).astype(np.int16)
        exact8 = a8.astype(np.int64) @ wq.astype(np.int64).T
        exact16 = a16.astype(np.int64) @ wq.astype(np.int64).T
        assert (int8_gemm.gemm_u8s8(a8, int8_gemm.pack_weights_u8s8(wq), n) == exact8).all(), (m, n, k)
        assert (int8_gemm.gemm_s16s8(a16, int8_gemm.pack_weights_s16s8(wq), n) == exact16).all(), (m, n, k)
    lengths = [1, 7, 16, 33, 100]
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    qkv = rng.standard_normal((cu[-1], 3 * 384)).astype(np.float32)
    got = jit.attention(qkv, cu, 12, 32, np.empty((cu[-1], 384), np.float32))
    want = reference.attention(qkv, cu, 12, 32, np.empty((cu[-1], 384), np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg="attention")


def _texts():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "data", "parity_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    return [""] + corpus[::23]  # 31 texts: empty, short, CJK, emoji, over 256 tokens


def main(out_path):
    import numpy as np

    import minilm_np
    from minilm_np.kernels import cpu

    _check_twins()
    texts = _texts()
    vectors = {}
    for mode in MODES:
        model = minilm_np.load(backend="numba", quantize=mode, threads=2)
        batched = model.encode(texts, batch_size=8)
        for batch_size in (1, 3, 32):
            again = model.encode(texts[::-1], batch_size=batch_size)[::-1]
            assert np.array_equal(batched, again), f"{mode}: batch_size={batch_size}, reversed, differs"
        for i, text in enumerate(texts[:12]):
            assert np.array_equal(model.encode(text), batched[i]), f"{mode}: text {i} differs alone"
        vectors[str(mode)] = batched
    import numba

    taken = {"avx512_float32": bool(cpu.ISA.avx512), "int8": _int8_path(cpu),
             "target": numba.config.CPU_NAME or "host"}
    np.savez(out_path, taken=json.dumps(taken), **vectors)


if __name__ == "__main__":
    main(sys.argv[1])
