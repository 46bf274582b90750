"""Throughput of the int8 GEMM kernels against float32 numpy sgemm (OpenBLAS).

Prints, per shape ``(M, K, N)``: GOP/s of ``gemm_u8s8`` and ``gemm_s16s8`` (one multiply-add
counts as 2 ops) and GFLOP/s of ``np.matmul`` on float32 of the same shape, at the current
thread count (or ``--threads``: sets both numba's and the BLAS pool).  The three are timed
interleaved, ``--repeats`` rounds, and the median is reported; the machine may be shared.

    python bench/int8_gemm_speed.py [--threads 1] [--repeats 15] [--portable]

OpenBLAS worker threads spin for ~2**28 cycles (``OPENBLAS_THREAD_TIMEOUT`` = 28) after each
sgemm, stealing the cores numba's workqueue threads need; interleaved timing would then charge
that spin to the int8 kernels (measured 2-3x slower at 2 threads).  This script therefore sets
``OPENBLAS_THREAD_TIMEOUT=4`` unless it is already set (before numpy is imported).
"""
import argparse
import os
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

SHAPES = [(2048, 384, 1152), (2048, 384, 384), (2048, 384, 1536), (2048, 1536, 384),
          (128, 384, 1152), (1, 384, 1536), (1, 1536, 384)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="numba and BLAS threads")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--portable", action="store_true", help="time the non-AVX2 numba path")
    args = parser.parse_args()

    import numba
    from minilm_np.kernels import cpu
    from minilm_np.kernels import int8_gemm as g
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    if args.threads:
        numba.set_num_threads(args.threads)
        if threadpool_limits is not None:
            threadpool_limits(args.threads, user_api="blas")
    isa = cpu.isa(int8_vector=not args.portable)
    print(f"numba threads {numba.get_num_threads()}, {isa} (CPU AVX2={cpu.AVX2}), median of {args.repeats}")
    print(f"{'M':>5} {'K':>5} {'N':>5} | {'u8s8 GOP/s':>10} {'s16s8 GOP/s':>11} "
          f"{'sgemm GFLOP/s':>13} | {'u8s8 us':>9} {'s16s8 us':>9} {'sgemm us':>9}")
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        a8 = rng.integers(0, 128, (m, k), dtype=np.uint8)
        a16 = rng.integers(-2047, 2048, (m, k), dtype=np.int16)
        w = rng.integers(-127, 128, (n, k), dtype=np.int8)
        p8, p16 = g.pack_weights_u8s8(w), g.pack_weights_s16s8(w)
        af, wf = a8.astype(np.float32), w.astype(np.float32)
        c = np.empty((m, n), np.int32)
        cf = np.empty((m, n), np.float32)
        fns = [lambda: g.gemm_u8s8(a8, p8, n, c, isa=isa), lambda: g.gemm_s16s8(a16, p16, n, c, isa=isa),
               lambda: np.matmul(af, wf.T, out=cf)]
        for f in fns:  # warm up (compile, caches, thread pools)
            f(), f()
        inner = max(1, int(2e8 // (2 * m * k * n)))  # ~>10 ms per sample for tiny shapes
        times = [[], [], []]
        for _ in range(args.repeats):
            for i, f in enumerate(fns):
                t0 = time.perf_counter()
                for _ in range(inner):
                    f()
                times[i].append((time.perf_counter() - t0) / inner)
        med = [float(np.median(t)) for t in times]
        ops = 2.0 * m * k * n
        rates = [ops / t / 1e9 for t in med]
        print(f"{m:5d} {k:5d} {n:5d} | {rates[0]:10.1f} {rates[1]:11.1f} {rates[2]:13.1f} | "
              f"{med[0] * 1e6:9.1f} {med[1] * 1e6:9.1f} {med[2] * 1e6:9.1f}")


if __name__ == "__main__":
    main()
