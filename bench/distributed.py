"""Throughput of ``Embedder`` on Ray Data and Dask against one process with the same cores.

The bench corpus (bench/corpus.txt, 2,000 texts) is repeated ``--repeat`` times. Each point is
W workers x 1 thread on a cluster of W CPUs against one process x W threads: the engine's
overhead is ``1 - engine texts/s / single texts/s``. The engine's time runs from the dataset's
creation to the last vector back in the driver (actor or worker start and model loading
included; the cluster's own start is reported apart); the single process's time is one
``encode`` of the whole corpus after loading. The numba kernels are compiled (cached) first.

Examples::

    python bench/distributed.py                              # 2 workers: ray, dask, single x 2 threads
    python bench/distributed.py --workers 1,2,4,8,16         # scaling, on a 16-core machine
    python bench/distributed.py --repeat 1 --workers 2       # a quick check
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# This file's name would shadow the `distributed` package (Dask's) from its own folder.
sys.path[:] = [os.path.dirname(HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import minilm_np  # noqa: E402


class CpuByRole:
    """CPU seconds (user + system) the machine's processes spend during a ``with`` block, by role.

    Roles: ``workers`` (Ray's ``MapWorker`` actors, Dask's worker processes: the processes that
    embed), ``driver`` (this process: Ray Data's executor, Dask's scheduler, nannies and client),
    ``engine`` (the engine's other processes: raylet, GCS, idle Ray workers, agents) and
    ``other`` (the rest of the machine). Sampled every ``interval`` seconds with psutil (a process
    that ends between two samples counts up to its last one).
    """

    def __init__(self, interval=1.0):
        import threading

        self.interval = interval
        self.first, self.last, self.role = {}, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, initial=False):
        import psutil

        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                times = proc.cpu_times()
                pid = proc.info["pid"]
                if pid not in self.role:
                    ours = pid == me or me in (p.pid for p in proc.parents())
                    self.role[pid] = "driver" if pid == me else "engine" if ours else "other"
                    self.first[pid] = times.user + times.system if initial else 0.0
                if self.role[pid] == "engine":  # a Ray actor names itself after it starts
                    cmd = " ".join(proc.info["cmdline"] or [])
                    if "MapWorker" in cmd or "spawn_main" in cmd:
                        self.role[pid] = "workers"
                self.last[pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def __str__(self):
        return "CPU s: " + ", ".join(f"{role} {seconds:.1f}" for role, seconds in self.totals().items())

    def totals(self):
        out = {"workers": 0.0, "driver": 0.0, "engine": 0.0, "other": 0.0}
        for pid, last in self.last.items():
            out[self.role[pid]] += max(0.0, last - self.first[pid])
        return out


def corpus(repeat):
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    return texts * repeat


def single(texts, workers, model, quantize, batch_size):
    encoder = minilm_np.load(model, threads=workers, quantize=quantize)
    encoder.encode(texts[:64], batch_size=batch_size)
    start = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=batch_size)
    return time.perf_counter() - start, vectors


def ray_data(texts, workers, model, quantize, batch_size, rows_per_batch):
    import pandas as pd
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cluster_s = time.perf_counter() - started
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        start = time.perf_counter()
        frame = pd.DataFrame({"id": np.arange(len(texts)), "text": texts})
        blocks = [frame[i:i + rows_per_batch] for i in range(0, len(frame), rows_per_batch)]
        out = ray.data.from_pandas(blocks).map_batches(
            minilm_np.Embedder, fn_constructor_kwargs={"model": model, "quantize": quantize,
                                                       "batch_size": batch_size},
            concurrency=workers, num_cpus=1, batch_size=rows_per_batch).to_pandas()
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    return seconds, cluster_s, np.stack(out["embedding"].to_numpy())


def dask(texts, workers, model, quantize, batch_size, rows_per_batch):
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
        cluster_s = time.perf_counter() - started
        start = time.perf_counter()
        frame = dd.from_pandas(pd.DataFrame({"id": np.arange(len(texts)), "text": texts}),
                               chunksize=rows_per_batch)
        meta = frame._meta.assign(embedding=pd.Series([], dtype=object))
        embed = minilm_np.Embedder(model, quantize=quantize, batch_size=batch_size)
        out = frame.map_partitions(embed, meta=meta).compute()
        seconds = time.perf_counter() - start
    return seconds, cluster_s, np.stack(out["embedding"].to_numpy())


ENGINES = {"ray": ray_data, "dask": dask}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="copies of the 2,000-text corpus (default: 50)")
    parser.add_argument("--workers", default="2", help="comma-separated worker counts (default: 2)")
    parser.add_argument("--engines", default="ray,dask")
    parser.add_argument("--model", default=None)
    parser.add_argument("--quantize", choices=["w8", "w8a16", "w8a8"], default=None)
    parser.add_argument("--batch-size", type=int, default=32, help="encode's batch_size")
    parser.add_argument("--rows-per-batch", type=int, default=1000, help="rows an engine hands a worker at once")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    texts = corpus(args.repeat)
    minilm_np.load(args.model, quantize=args.quantize).warmup()  # compile / cache the kernels once
    results = []
    print(f"{len(texts)} texts; CPUs here: {os.cpu_count()}; model {args.model or 'all-MiniLM-L6-v2'}, "
          f"quantize {args.quantize}")
    print(f"{'workers':>7} {'runtime':>22} {'seconds':>8} {'texts/s':>8} {'overhead':>9} {'cluster start':>13}")
    for workers in (int(w) for w in args.workers.split(",")):
        with CpuByRole() as cpu:
            base_s, want = single(texts, workers, args.model, args.quantize, args.batch_size)
        cpu_s = cpu.totals()
        print(f"{workers:>7} {f'1 process x {workers} threads':>22} {base_s:>8.1f} {len(texts) / base_s:>8.0f} "
              f"{'':>9} {'':>13}   {cpu}", flush=True)
        results.append({"workers": workers, "runtime": "single", "seconds": base_s, "cpu_seconds": cpu_s})
        for engine in args.engines.split(","):
            with CpuByRole() as cpu:
                seconds, cluster_s, got = ENGINES[engine](texts, workers, args.model, args.quantize,
                                                          args.batch_size, args.rows_per_batch)
            if not np.array_equal(got, want):
                sys.exit(f"{engine}: the vectors differ from one process's")
            overhead = 1 - base_s / seconds
            cpu_s = cpu.totals()
            print(f"{workers:>7} {f'{engine} {workers} x 1 thread':>22} {seconds:>8.1f} {len(texts) / seconds:>8.0f} "
                  f"{overhead:>8.1%} {cluster_s:>12.1f}s   {cpu}",
                  flush=True)
            results.append({"workers": workers, "runtime": engine, "seconds": seconds, "overhead": overhead,
                            "cluster_start_s": cluster_s, "cpu_seconds": cpu_s})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"texts": len(texts), "cpus": os.cpu_count(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
