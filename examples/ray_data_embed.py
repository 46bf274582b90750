"""Embed a corpus with Ray Data: ``map_batches(Embedder, ...)`` on actors, then ``write_parquet``.

Thread arithmetic: each actor reserves ``--cpus-per-actor`` CPUs (``num_cpus``) and Ray sets
its ``OMP_NUM_THREADS`` to that number, which ``Embedder`` takes as its thread count; so
``--actors`` x ``--cpus-per-actor`` threads run in all, and Ray schedules no more actors than
the cluster has CPUs for. On one 16-core machine: ``--actors 8 --cpus-per-actor 2`` (or 16 x 1).
Where the CPUs go further than a per-actor count suggests (hyper-threads), pass ``--threads``.

The model travels by path: every node must see ``--model`` (a shared file system, or the
directory shipped with the job, e.g. ``runtime_env={"working_dir": ...}``; ``minilm-np quantize
--mode w8a8 --output DIR`` writes a smaller, faster one). Example, on this machine::

    python examples/ray_data_embed.py --input bench/corpus.txt --output /tmp/corpus-vectors \
        --actors 2 --cpus-per-actor 1

Input: .parquet, .jsonl (``--column`` field), .csv or .txt (one text per line, column ``text``).
"""
import argparse

import ray

from minilm_np import Embedder


def read(path):
    # Reading (and writing) is I/O: it reserves no CPU, so that the actors may hold them all.
    options = {"ray_remote_args": {"num_cpus": 0}}
    if path.endswith(".parquet"):
        return ray.data.read_parquet(path, **options)
    if path.endswith((".jsonl", ".ndjson")):
        return ray.data.read_json(path, lines=True, **options)
    if path.endswith(".csv"):
        return ray.data.read_csv(path, **options)
    return ray.data.read_text(path, **options)  # one row per line, column "text"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="folder of Parquet files")
    parser.add_argument("--model", default=None, help="model directory every node can read (default: "
                        "all-MiniLM-L6-v2)")
    parser.add_argument("--column", default="text")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--cpus-per-actor", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="threads per actor (default: its CPUs)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per batch handed to an actor")
    parser.add_argument("--address", default=None, help="a running cluster (default: start a local one)")
    args = parser.parse_args()

    ray.init(address=args.address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # rows out in input order
    (read(args.input)
     .map_batches(Embedder, fn_constructor_kwargs={"model": args.model, "column": args.column,
                                                   "threads": args.threads},
                  concurrency=args.actors, num_cpus=args.cpus_per_actor, batch_size=args.batch_size)
     .write_parquet(args.output, ray_remote_args={"num_cpus": 0}))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
