"""Embed a corpus with Spark: ``mapInPandas`` with an ``Embedder`` per task.

Thread arithmetic: an executor with ``spark.executor.cores`` = C runs C / ``spark.task.cpus``
tasks at once, and Spark sets each Python worker's ``OMP_NUM_THREADS`` to ``spark.task.cpus``,
which ``Embedder`` takes as its thread count: C threads per executor, never more. On a 16-core
executor: ``spark.task.cpus=2`` gives 8 tasks x 2 threads (or 4 x 4; larger tasks load fewer
models). Locally, ``local[N]`` gives N cores: ``--master 'local[2]' --task-cpus 1`` is 2 x 1.

The model travels by path: every executor must see ``--model`` (a shared file system, or the
directory shipped with the job: ``spark-submit --archives minilm-w8a8.tar.gz#model ...
--model ./model``, the output of ``minilm-np quantize`` packed with tar). Example::

    python examples/spark_embed.py --input bench/corpus.txt --output /tmp/corpus-vectors \
        --master 'local[2]' --task-cpus 1

Input: .parquet, .jsonl, .csv (with a header) or .txt (one text per line, column ``text``).
"""
import argparse

from pyspark.sql import SparkSession
from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

from minilm_np import Embedder


def read(spark, path, column):
    if path.endswith(".parquet"):
        return spark.read.parquet(path)
    if path.endswith((".jsonl", ".ndjson")):
        return spark.read.json(path)
    if path.endswith(".csv"):
        return spark.read.option("header", True).option("multiLine", True).csv(path)
    return spark.read.text(path).withColumnRenamed("value", column)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="folder of Parquet files")
    parser.add_argument("--model", default=None, help="model directory every executor can read")
    parser.add_argument("--column", default="text")
    parser.add_argument("--master", default=None, help="e.g. local[2] (default: as spark-submit says)")
    parser.add_argument("--task-cpus", type=int, default=1, help="spark.task.cpus: threads per task")
    parser.add_argument("--partitions", type=int, default=None, help="repartition to this many first")
    args = parser.parse_args()

    builder = SparkSession.builder.appName("minilm-np embed").config("spark.task.cpus", str(args.task_cpus))
    spark = (builder.master(args.master) if args.master else builder).getOrCreate()
    frame = read(spark, args.input, args.column)
    if args.partitions:
        frame = frame.repartition(args.partitions)
    embed = Embedder(args.model, column=args.column)  # pickled to each task: the settings, not the weights

    def embed_partition(batches):  # one Python worker per task; the model loads once per worker process
        for batch in batches:
            yield embed(batch)

    schema = StructType(frame.schema.fields + [StructField("embedding", ArrayType(FloatType()))])
    frame.mapInPandas(embed_partition, schema).write.parquet(args.output)
    spark.stop()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
