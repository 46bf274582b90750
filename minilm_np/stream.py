"""Embedding a file of any size into an output file, a chunk at a time, resumable.

Each chunk of texts is embedded and written as a part file in ``OUTPUT.partial/`` (under a
temporary name, renamed when complete); at the end the parts are joined into
``OUTPUT.partial/joined``, which is renamed to ``OUTPUT``. So memory holds one chunk whatever
the input's size, an interrupted run never leaves a file named ``OUTPUT``, and a resumed run
skips the texts of the complete parts and writes the same bytes an uninterrupted run writes:
a text's vector does not depend on the other texts of its batch.
"""
import itertools
import json
import os
import shutil
import sys

from . import __version__, textio

# Texts per chunk: the unit of --resume (a chunk of 384-wide vectors is 12 MB).
CHUNK_TEXTS = 8192
JOURNAL = "run.json"
PART = "part-{:06d}"


def partial_dir(output):
    """The folder holding ``output``'s parts while it is being written."""
    return output + ".partial"


def _part_path(work, index, fmt):
    return os.path.join(work, PART.format(index) + "." + fmt)


def run_settings(model, input_path, input_fmt, field, column, normalize, truncate_dim, chunk_texts, output_fmt):
    """What must not change between an interrupted run and its resumption (a JSON-able dict)."""
    stat = os.stat(input_path)
    return {"minilm_np": __version__, "input": os.path.abspath(input_path), "input_bytes": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "input_format": input_fmt,
            "field": field if input_fmt == "jsonl" else None,
            "column": column if input_fmt in ("csv", "parquet") else None,
            "model": model.model_dir, "backend": model.backend, "quantize": model.quantization,
            "normalize": bool(normalize), "truncate_dim": truncate_dim, "chunk_texts": chunk_texts,
            "output_format": output_fmt}


def _start(work, settings, resume):
    """Parts already complete in ``work`` (0 for a new run), after checking the journal's settings."""
    journal = os.path.join(work, JOURNAL)
    if os.path.isdir(work):
        if not resume:
            raise ValueError(f"{work} holds the parts of an interrupted run: add --resume to continue it, "
                             "or delete that folder to start over")
        try:
            with open(journal, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"{journal}: cannot read the interrupted run's settings ({error}); delete {work} "
                             "to start over") from None
        changed = [key for key in settings if saved.get(key) != settings[key]]
        if changed:
            key = changed[0]
            raise ValueError(f"--resume: {key} was {saved.get(key)!r} in the interrupted run, now "
                             f"{settings[key]!r}; delete {work} to start over")
        done = 0
        while os.path.exists(_part_path(work, done, settings["output_format"])):
            done += 1
        return done
    os.makedirs(work)
    with open(journal + ".tmp", "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=1)
    os.replace(journal + ".tmp", journal)
    return 0


def _skip(texts, count, chunk_texts, done_parts):
    """Consume ``count`` texts of ``texts``; an input shorter than its complete parts is an error."""
    skipped = sum(1 for _ in itertools.islice(texts, count))
    if done_parts and skipped <= (done_parts - 1) * chunk_texts:
        raise ValueError(f"--resume: the input has {skipped} texts, fewer than the interrupted run's "
                         f"{done_parts} complete chunks")
    return skipped


def _progress(show, total, initial):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="Embedding", unit="text", file=sys.stderr, smoothing=0.1)


def embed_to_file(model, texts, output, settings, *, resume=False, batch_size=32, normalize=False,
                  truncate_dim=None, show_progress=False, total=None):
    """Embed ``texts`` into ``output`` a chunk at a time; return the ``(rows, dim)`` written.

    Parameters
    ----------
    model : minilm_np.SentenceTransformer
    texts : iterator of str
        Consumed lazily, :data:`CHUNK_TEXTS` (``settings["chunk_texts"]``) at a time.
    output : str
        A .npy, .jsonl, .csv or .parquet path (the format is ``settings["output_format"]``).
    settings : dict
        :func:`run_settings`; kept in the partial folder so that ``resume`` continues only the
        same run.
    resume : bool
        Continue from the complete parts of an interrupted run (a new run when there are none).
    show_progress : bool
        A progress bar on stderr with the rate and, when ``total`` is known, the time left.
    """
    fmt, chunk_texts = settings["output_format"], settings["chunk_texts"]
    work = partial_dir(output)
    done = _start(work, settings, resume)
    rows = _skip(texts, done * chunk_texts, chunk_texts, done)
    dim = model.get_sentence_embedding_dimension() if truncate_dim is None else min(
        truncate_dim, model.get_sentence_embedding_dimension())
    progress = _progress(show_progress, total, rows)
    try:
        while chunk := list(itertools.islice(texts, chunk_texts)):
            vectors = model.encode(chunk, batch_size=batch_size, normalize_embeddings=normalize,
                                   truncate_dim=truncate_dim)
            final = _part_path(work, done, fmt)
            textio.write_part(fmt, final + ".tmp", chunk, vectors)
            os.replace(final + ".tmp", final)
            done += 1
            rows += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {done} complete chunks of {chunk_texts} texts are kept in {work}; run the same "
              "command with --resume to continue", file=sys.stderr)
        raise
    finally:
        if progress is not None:
            progress.close()
    joined = os.path.join(work, "joined")
    textio.join_parts(fmt, [_part_path(work, i, fmt) for i in range(done)], joined, dim)
    os.replace(joined, output)
    shutil.rmtree(work)
    return rows, dim


def embed_to_stdout(model, texts, chunk_texts=CHUNK_TEXTS, *, batch_size=32, normalize=False, truncate_dim=None,
                    show_progress=False, total=None):
    """Embed ``texts`` as JSON lines on stdout, a chunk at a time; return the number of texts."""
    rows = 0
    progress = _progress(show_progress, total, 0)
    try:
        while chunk := list(itertools.islice(texts, chunk_texts)):
            vectors = model.encode(chunk, batch_size=batch_size, normalize_embeddings=normalize,
                                   truncate_dim=truncate_dim)
            sys.stdout.writelines(textio.jsonl_line(text, vector) for text, vector in zip(chunk, vectors))
            rows += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
    finally:
        if progress is not None:
            progress.close()
    return rows
