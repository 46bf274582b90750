"""Dynamic batching: concurrent requests' texts embedded together in packed forward passes."""
import collections
import concurrent.futures
import threading
import time

import numpy as np

from .. import _threads
from ..encoder import TOKENS_PER_TEXT
from ..model import RunState

# Tokens per forward pass inside a coalesced batch: encode()'s default (batch_size 32), the
# pass size the encoder was tuned at; a batch of up to max_batch_tokens runs as several.
PASS_TOKENS = 32 * TOKENS_PER_TEXT


class _Job:
    __slots__ = ("ids", "tokens", "future", "queued_at")

    def __init__(self, ids):
        self.ids = ids
        self.tokens = sum(len(i) for i in ids)
        self.future = concurrent.futures.Future()
        self.queued_at = time.perf_counter()


class EmbedBatcher:
    """One worker thread that embeds queued requests, many at a time.

    The worker takes every queued request up to ``max_batch_tokens`` tokens (a larger request
    goes alone); while requests are still being tokenised (:meth:`expecting`), it waits up to
    ``max_wait_s`` for them. The batch is sorted by length and run in packed forward passes.
    Because a text's vector is bitwise the same in any batch, each request gets exactly what
    ``encode()`` of its texts alone returns.

    Parameters
    ----------
    model : minilm_np.SentenceTransformer
    max_batch_tokens : int
        Tokens a coalesced batch may hold.
    max_wait_s : float
        How long a batch waits for requests that are on their way.
    metrics : minilm_np.serve.metrics.Metrics or None
    """

    def __init__(self, model, max_batch_tokens, max_wait_s, metrics=None):
        self.model = model
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.metrics = metrics
        self._queue = collections.deque()
        self._incoming = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="minilm-np-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for the worker."""
        return len(self._queue)

    def expecting(self):
        """A context manager around a request's tokenisation: the worker may wait for it."""
        return _Expecting(self)

    def submit(self, ids):
        """Queue the token ids of one request's texts.

        Parameters
        ----------
        ids : list of ndarray of int64, each ``(length,)``; at least one

        Returns
        -------
        concurrent.futures.Future of ndarray of float32 ``(len(ids), dim)``: the vectors after
        the model's modules, before encode()'s ``truncate_dim`` and ``normalize_embeddings``.
        """
        job = _Job(ids)
        with self._cond:
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def _take(self):
        """The next batch of jobs (blocks until there is one)."""
        with self._cond:
            while not self._queue:
                self._cond.wait()
            jobs = [self._queue.popleft()]
            tokens = jobs[0].tokens
            deadline = time.perf_counter() + self.max_wait_s
            while tokens < self.max_batch_tokens:
                if self._queue:
                    if tokens + self._queue[0].tokens > self.max_batch_tokens:
                        break
                    jobs.append(self._queue.popleft())
                    tokens += jobs[-1].tokens
                    continue
                left = deadline - time.perf_counter()
                if self._incoming == 0 or left <= 0:
                    break
                self._cond.wait(left)
        return jobs, tokens

    def _run(self):
        if self.model.backend == "numba":  # numba's thread count is per calling thread
            _threads.set_numba_threads(self.model.threads)
        state = RunState(self.model.config, PASS_TOKENS)
        while True:
            jobs, tokens = self._take()
            started = time.perf_counter()
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            try:
                rows = self.model._embed_window([i for job in jobs for i in job.ids], PASS_TOKENS, state,
                                                "sentence_embedding", False, None)
            except BaseException as error:  # a failed pass fails its requests, never the worker
                for job in jobs:
                    job.future.set_exception(error)
                continue
            start = 0
            for job in jobs:
                stop = start + len(job.ids)
                job.future.set_result(np.stack(rows[start:stop]))
                start = stop
            if self.metrics is not None:
                self.metrics.batch(len(rows), tokens, [started - job.queued_at for job in jobs])


class _Expecting:
    def __init__(self, batcher):
        self.batcher = batcher

    def __enter__(self):
        with self.batcher._cond:
            self.batcher._incoming += 1

    def __exit__(self, *exc):
        with self.batcher._cond:
            self.batcher._incoming -= 1
            self.batcher._cond.notify()
