"""Embed a corpus with Dask: ``map_partitions(Embedder(...))`` on a ``distributed`` cluster.

Thread arithmetic: a worker process runs ``threads_per_worker`` tasks at once, and its nanny
sets ``OMP_NUM_THREADS=1``, so each task's ``Embedder`` runs 1 thread: ``--workers`` x
``--threads-per-worker`` threads in all, which should be the machine's cores (16 cores: 8 x 2,
or 16 x 1; one model is loaded per worker process and shared by its task threads). With fewer
task threads than cores, give each task more with ``--threads`` (e.g. 4 workers x 1 task x
``--threads 4``).

The model travels by path: every worker must see ``--model`` (a shared file system, or a
directory shipped to the workers; ``minilm-np quantize`` writes a smaller, faster one).
Example, on this machine::

    python examples/dask_embed.py --input bench/corpus.txt --output /tmp/corpus-vectors \
        --workers 2 --threads-per-worker 1

Input: .parquet, .csv, .jsonl or .txt (one text per line, column ``text``).
"""
import argparse

import dask.bag
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
from distributed import Client, LocalCluster

from minilm_np import Embedder


def read(path):
    if path.endswith(".parquet"):
        return dd.read_parquet(path)
    if path.endswith(".csv"):
        return dd.read_csv(path)
    if path.endswith((".jsonl", ".ndjson")):
        return dd.read_json(path, lines=True, blocksize=2 ** 24)
    lines = dask.bag.read_text(path, blocksize=2 ** 24).map(lambda line: line.rstrip("\r\n"))
    return lines.to_dataframe(meta=pd.DataFrame({"text": pd.Series([], dtype="string")}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="folder of Parquet files")
    parser.add_argument("--model", default=None, help="model directory every worker can read")
    parser.add_argument("--column", default="text")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="threads per task (default: 1, as the "
                        "nanny sets OMP_NUM_THREADS)")
    parser.add_argument("--partitions", type=int, default=None, help="repartition to this many first")
    parser.add_argument("--scheduler", default=None, help="a running scheduler's address (default: a local "
                        "cluster)")
    args = parser.parse_args()

    cluster = None if args.scheduler else LocalCluster(n_workers=args.workers,
                                                       threads_per_worker=args.threads_per_worker)
    with Client(args.scheduler or cluster):
        frame = read(args.input)
        if args.partitions:
            frame = frame.repartition(npartitions=args.partitions)
        embed = Embedder(args.model, column=args.column, threads=args.threads)
        meta = frame._meta.assign(embedding=pd.Series([], dtype=object))
        # the Arrow schema, as meta's object column says nothing of the vectors
        schema = pa.Schema.from_pandas(frame._meta, preserve_index=False).append(
            pa.field("embedding", pa.list_(pa.float32())))
        frame.map_partitions(embed, meta=meta).to_parquet(args.output, schema=schema, write_index=False)
    if cluster is not None:
        cluster.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
