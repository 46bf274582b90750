"""Building model directories for tests: safetensors written with struct + json, without torch;
random SentencePiece-vocabulary sentence models, with torch.

:func:`make_model_dir` links the tokenizer and sentence-transformers files of the default
model into a fresh directory and writes the ``config.json`` and ``model.safetensors`` a test
asks for; :func:`tiny_config` and :func:`random_bert_tensors` (from :mod:`minilm_np.random_model`)
give a one-layer, 32-wide BERT (a 4 MB file) whose outputs are meaningless but whose shapes are
all a loader checks.
:func:`unigram_tokenizer` trains an XLM-R-style tokenizer on ``tests/data/multilingual_sample.txt``
and :func:`save_random_sentence_model` saves a random BERT with it through transformers and
sentence-transformers, as the multilingual hub models are saved.
"""
import json
import os
import shutil

from minilm_np.random_model import random_bert_tensors, safetensors_bytes, tiny_config  # noqa: F401

# The small files of a sentence-transformers directory, linked (not copied) from the default model.
LINKED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling")


def write_safetensors(path, tensors: dict, header_updates: dict | None = None) -> str:
    """Write :func:`safetensors_bytes` to ``path``; return the path."""
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors, header_updates))
    return str(path)


def make_model_dir(directory, source_dir: str, config: dict | None = None, tensors: dict | None = None,
                   weights_from_source: bool = False, skip: tuple = ()) -> str:
    """A model directory: the small files of ``source_dir`` linked, the rest as asked.

    Parameters
    ----------
    directory : path-like
        Created if missing.
    source_dir : str
        The default model's directory.
    config : dict, optional
        Written as config.json; default: ``source_dir``'s config.json linked.
    tensors : dict, optional
        Written as model.safetensors.
    weights_from_source : bool
        Link ``source_dir``'s model.safetensors instead.
    skip : tuple of str
        Names of :data:`LINKED_FILES` (or config.json) to leave out.
    """
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    for name in LINKED_FILES:
        if name not in skip and os.path.exists(os.path.join(source_dir, name)):
            os.symlink(os.path.join(source_dir, name), os.path.join(directory, name))
    if config is not None:
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
    elif "config.json" not in skip:
        os.symlink(os.path.join(source_dir, "config.json"), os.path.join(directory, "config.json"))
    if tensors is not None:
        write_safetensors(os.path.join(directory, "model.safetensors"), tensors)
    elif weights_from_source:
        os.symlink(os.path.join(source_dir, "model.safetensors"), os.path.join(directory, "model.safetensors"))
    return directory


# XLM-R's special tokens, in its id order: what SentencePiece-vocabulary BERT models
# (paraphrase-multilingual-MiniLM-L12-v2, multilingual-e5-small) carry.
XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MULTILINGUAL_SAMPLE = os.path.join(os.path.dirname(__file__), "data", "multilingual_sample.txt")


def unigram_tokenizer(vocab_size: int = 2000, texts=None):
    """A SentencePiece-style ``tokenizers.Tokenizer`` like XLM-R's, trained on ``texts``.

    Unigram model, NFKC normaliser (with XLM-R's quote and space-run replacements), Metaspace
    pre-tokeniser (``▁``, prepended always), ``<s> $A </s>`` post-processor, XLM-R's special
    tokens first (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3) and ``<mask>`` last.

    Parameters
    ----------
    vocab_size : int
        Upper bound: a small sample yields fewer pieces.
    texts : iterable of str, optional
        Training text; default the lines of ``tests/data/multilingual_sample.txt``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if texts is None:
        with open(MULTILINGUAL_SAMPLE, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(XLMR_SPECIALS), unk_token="<unk>",
                                      shrinking_factor=0.75, max_piece_length=8, n_sub_iterations=2)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_special_tokens(["<mask>"])  # XLM-R's last id
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tokenizer.token_to_id("<s>")), ("</s>", tokenizer.token_to_id("</s>"))])
    return tokenizer


def save_xlmr_tokenizer(directory, tokenizer, model_max_length: int = 512, tokenizer_class: str = "file") -> None:
    """Save ``tokenizer`` with transformers (tokenizer.json, tokenizer_config.json) with XLM-R's special tokens.

    Parameters
    ----------
    tokenizer_class : {"file", "XLMRobertaTokenizer", "XLMRobertaTokenizer+file"}
        ``"file"``: a generic fast tokenizer, which transformers loads from tokenizer.json as
        written. ``"XLMRobertaTokenizer"``: transformers 5 rebuilds that class's pipeline (no
        normaliser but a Precompiled one, WhitespaceSplit + Metaspace) and writes it, as a hub
        XLM-R tokenizer is loaded and saved by transformers 5. ``"XLMRobertaTokenizer+file"``:
        that class, but tokenizer.json keeps ``tokenizer``'s own pipeline, as in a hub file
        written by an older transformers (transformers 5 still rebuilds it when loading).
    """
    from transformers import PreTrainedTokenizerFast, XLMRobertaTokenizerFast

    cls = PreTrainedTokenizerFast if tokenizer_class == "file" else XLMRobertaTokenizerFast
    cls(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=model_max_length).save_pretrained(str(directory))
    if tokenizer_class.endswith("+file"):
        tokenizer.save(os.path.join(str(directory), "tokenizer.json"))


def randomize_layer_norms(model) -> None:
    """LayerNorms start at gamma=1, beta=0: draw them too, so that every weight counts (needs torch)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)


def save_random_sentence_model(directory, tokenizer, *, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                               intermediate_size=128, max_position_embeddings=128, max_seq_length=None,
                               pooling="mean", dense_out=None, normalize=False, prompts=None, do_lower_case=False,
                               tokenizer_class="file", init_range=0.08, seed=0) -> str:
    """A sentence-transformers directory of a random ``BertModel`` with ``tokenizer`` (XLM-R style).

    Saved by transformers and ``SentenceTransformer.save`` (safetensors), as a hub model is:
    ``config.json`` ``model_type`` bert, the vocabulary the tokenizer's size, Transformer,
    Pooling (``pooling``), then a Tanh Dense of ``dense_out`` features and a Normalize if asked.
    Needs torch, transformers and sentence-transformers.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        E.g. :func:`unigram_tokenizer`; saved with :func:`save_xlmr_tokenizer` (``tokenizer_class``).
    prompts : dict of str to str, optional
        config_sentence_transformers.json's ``prompts`` (e.g. ``{"query": "query: "}``).
    init_range : float
        Std of the normal weight init: wider than BERT's 0.02 so that attention is far from uniform.

    Returns
    -------
    str
        The directory.
    """
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    with warnings.catch_warnings():  # v6 moved the modules; the old path works from v2 to v6
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    directory = str(directory)
    bert_dir = os.path.join(directory, "_bert")
    save_xlmr_tokenizer(bert_dir, tokenizer, model_max_length=max_position_embeddings, tokenizer_class=tokenizer_class)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden_size,
                        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                        intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
                        hidden_act="gelu", initializer_range=init_range, pad_token_id=tokenizer.token_to_id("<pad>"))
    bert = BertModel(config, add_pooling_layer=False).eval()
    randomize_layer_norms(bert)
    bert.save_pretrained(bert_dir, safe_serialization=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformer = Transformer(bert_dir, max_seq_length=max_seq_length, do_lower_case=do_lower_case)
    modules = [transformer, Pooling(hidden_size, pooling_mode=pooling)]
    if dense_out is not None:
        modules.append(Dense(modules[1].get_sentence_embedding_dimension(), dense_out,
                             activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", prompts=prompts)
    model.save(directory)
    shutil.rmtree(bert_dir)
    if tokenizer_class.endswith("+file"):  # saving wrote transformers' rebuilt pipeline
        tokenizer.save(os.path.join(directory, "tokenizer.json"))
    if do_lower_case:  # sentence-transformers 6 does not write the flag; the hub's files carry it here
        path = os.path.join(directory, "sentence_bert_config.json")
        with open(path, encoding="utf-8") as f:
            st_config = json.load(f)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dict(st_config, do_lower_case=True), f, indent=2)
    return directory
