"""``Embedder`` on real local clusters: Ray Data, Dask distributed, Spark (one start each, loopback only).

Each embeds the 2,000 texts of bench/corpus.txt with a small random model on 2 workers of 1 CPU
each; the vectors must equal one process's ``encode()`` bitwise, every row in order with its id,
and every worker must run one thread, the CPU it was given (2 workers x 1 thread on 2 CPUs),
counted from the threads' CPU time during each batch.
"""
import importlib.util
import os
import shutil
import sys

import numpy as np
import pytest

import minilm_np
from busy_threads import counting_embedder

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "corpus.txt")
WORKERS = 2


def needs(module):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def corpus():
    with open(CORPUS, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    assert len(texts) == 2000
    return pd.DataFrame({"id": np.arange(len(texts), dtype=np.int64), "text": texts})


@pytest.fixture(scope="module")
def want(small_model_dir, corpus):
    return minilm_np.load(small_model_dir, threads=1).encode(corpus["text"].tolist())


def check(rows, corpus, want):
    """Rows in input order with their ids and texts, vectors bitwise encode()'s, 1 thread per worker."""
    assert rows["id"].tolist() == corpus["id"].tolist()
    assert rows["text"].tolist() == corpus["text"].tolist()
    got = np.stack([np.asarray(v) for v in rows["embedding"]])
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)
    assert set(rows["threads"]) == {1}, "the default thread count is not the worker's one CPU"
    assert rows["busy"].max() <= 1, f"a worker ran {rows['busy'].max()} threads on its one CPU"
    assert rows["pid"].nunique() <= WORKERS


@needs("ray")
def test_ray_data_map_batches(small_model_dir, corpus, want, tmp_path):
    import pyarrow.parquet as pq
    import ray

    ray.init(num_cpus=WORKERS, include_dashboard=False, object_store_memory=128 * 1024 ** 2,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ray.data.DataContext.get_current().enable_progress_bars = False
        blocks = [corpus[i:i + 250] for i in range(0, len(corpus), 250)]  # 8 blocks: work for both actors
        embedded = ray.data.from_pandas(blocks).map_batches(
            counting_embedder(), fn_constructor_kwargs={"model": small_model_dir},
            concurrency=WORKERS, num_cpus=1, batch_size=250).materialize()
        check(embedded.to_pandas(), corpus, want)
        embedded.select_columns(["id", "embedding"]).write_parquet(str(tmp_path / "out"))
    finally:
        ray.shutdown()
    table = pq.read_table(tmp_path / "out").sort_by("id")
    assert table.column("id").to_pylist() == corpus["id"].tolist()
    assert np.array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), want)


@needs("distributed")
def test_dask_map_partitions(small_model_dir, corpus, want):
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    frame = dd.from_pandas(corpus, npartitions=8)
    meta = frame._meta.assign(embedding=pd.Series([], dtype=object), pid=np.int64(0), threads=np.int64(0),
                              busy=np.int64(0))
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
        rows = frame.map_partitions(counting_embedder()(small_model_dir), meta=meta).compute()
    check(rows, corpus, want)


def _java():
    home = os.environ.get("JAVA_HOME")
    return shutil.which("java") or (home and os.path.exists(os.path.join(home, "bin", "java")))


@needs("pyspark")
@pytest.mark.skipif(not _java(), reason="Spark needs a Java runtime (none on PATH or in $JAVA_HOME)")
def test_spark_map_in_pandas(small_model_dir, corpus, want, monkeypatch):
    from pyspark.sql import SparkSession

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master(f"local[{WORKERS}]").config("spark.task.cpus", "1")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    embedder_class = counting_embedder()

    def embed_partition(frames):
        embed = embedder_class(small_model_dir)
        for frame in frames:
            yield embed(frame)

    try:
        schema = "id long, text string, embedding array<float>, pid long, threads long, busy long"
        rows = spark.createDataFrame(corpus).mapInPandas(embed_partition, schema).toPandas()
    finally:
        spark.stop()
    check(rows, corpus, want)
