"""Text to token ids with the model's own tokenizer.json, as sentence-transformers does it."""
import json
import os
import re

import numpy as np

from .errors import ModelFileError

# Texts longer than this many characters per allowed token are tokenised from a prefix.
CHARS_PER_TOKEN_WINDOW = 32
# Never hand the tokenizer more than this many characters of one text.
MAX_PREFIX_CHARS = 1 << 20
# str.strip()'s whitespace (re's \s is str.isspace() for str patterns).
_LEADING_SPACE = re.compile(r"\s*")
# tokenizer_config.json classes whose pipeline transformers 5 builds itself from tokenizer.json's
# vocabulary, keeping only a Precompiled normaliser (transformers/models/xlm_roberta/
# tokenization_xlm_roberta.py); sentence-transformers 6 tokenises with that pipeline.
SENTENCEPIECE_CLASSES = ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast")
# Every character str.isspace() accepts, to ask the tokenizer whether leading whitespace yields tokens.
_ALL_SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


class TextTokenizer:
    """Text to token ids with the model's tokenizer.json (WordPiece, Unigram/SentencePiece or any
    other), without padding, truncated at ``max_seq_length`` (special tokens included).

    Parameters
    ----------
    path : str
        ``tokenizer.json`` of the model.
    max_seq_length : int
    do_lower_case : bool
        Lower-case texts first (sentence_bert_config.json's flag): as sentence-transformers does
        it, a ``Lowercase`` normaliser is put before the tokenizer's own unless it has one.

    Notes
    -----
    Texts reach the tokenizer as they are, not stripped, as sentence-transformers gives them:
    for a Metaspace (SentencePiece) pre-tokeniser a whitespace-only text is a ``▁`` piece.

    A very long text is tokenised from a prefix just long enough to yield ``max_seq_length``
    tokens that a longer prefix could not change: the tokens before the last two
    pre-tokeniser words of the prefix (words are tokenised one by one, and normalisation only
    changes the text around the cut), so a 100 MB text costs no more than a page. A text
    whose first :data:`MAX_PREFIX_CHARS` characters do not hold enough words (one unbroken
    run, such as Chinese under a Metaspace pre-tokeniser) is tokenised from those characters
    alone. Where the tokenizer drops leading whitespace (a WordPiece model's does) the prefix
    starts after it, so a text of 100 MB of spaces and then words still gives those words.

    Lone surrogates (``"\\ud800"``), which cannot be encoded as UTF-8 and which the tokenizers
    library refuses, become U+FFFD, which the tokenizer then handles as it does that
    character (BERT's normaliser drops it, a SentencePiece vocabulary makes it ``<unk>``); a
    high and a low surrogate in a row (UTF-16 decoded as code units) are joined into their
    character. Thread-safe: encoding never changes tokenizer settings (the long-text path reads
    the truncated tokens' overflow instead of switching truncation off).
    """

    @classmethod
    def for_model(cls, model_dir: str, config) -> "TextTokenizer":
        """The tokenizer of a model directory, set up as its config says and checked against it.

        Raises
        ------
        ModelFileError
            ``tokenizer.json`` is missing or unreadable, or it has more tokens than the model's
            embedding table has rows (an id past the table would read out of bounds).
        """
        tokenizer = cls(os.path.join(model_dir, "tokenizer.json"), config.max_seq_length, config.do_lower_case)
        if tokenizer.vocab_size > config.vocab_size:
            raise ModelFileError(f"{tokenizer.path}: the tokenizer has {tokenizer.vocab_size} tokens "
                                 f"but config.json's vocab_size is {config.vocab_size}: the files do not match")
        return tokenizer

    def __init__(self, path: str, max_seq_length: int, do_lower_case: bool = False):
        from tokenizers import Tokenizer

        if not os.path.exists(path):
            raise ModelFileError(f"{path}: file is missing (the model's tokenizer)")
        try:
            self.tokenizer = Tokenizer.from_file(path)
        except Exception as error:  # tokenizers raises bare Exception for malformed files
            raise ModelFileError(f"{path}: not a valid tokenizer file ({str(error)[:200]})") from None
        self.path = path
        self.do_lower_case = do_lower_case
        _pipeline_as_transformers_builds_it(self.tokenizer, os.path.dirname(path))
        if do_lower_case:
            _lowercase_first(self.tokenizer)
        self.pad_token_id = read_pad_token_id(path, self.tokenizer)  # before no_padding(): it may read the padding
        self.tokenizer.no_padding()
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which nothing here
        # reads: the same ids, faster (abddcf8)
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self.special_tokens = self.tokenizer.num_special_tokens_to_add(False)
        # Skipping leading whitespace before cutting a long text changes no id only where the
        # tokenizer makes no token of it.
        self._skips_leading_space = (self.tokenizer.encode(_ALL_SPACES + "a b", add_special_tokens=False).ids
                                     == self.tokenizer.encode("a b", add_special_tokens=False).ids)
        self.max_seq_length = max_seq_length

    @property
    def vocab_size(self) -> int:
        """One past the largest token id the tokenizer can produce (added tokens included)."""
        return max(self.tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._max_seq_length = value
        self.tokenizer.enable_truncation(value)

    def _prepare(self, text: str) -> str:
        # Cut before any whole-text work (UTF-8 check) so that a 100 MB text is never copied;
        # the regex finds where str.strip() would start without copying.
        start = _LEADING_SPACE.match(text).end() if self._skips_leading_space else 0
        if start or len(text) > MAX_PREFIX_CHARS:
            text = text[start:start + MAX_PREFIX_CHARS]
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def _content_limit(self) -> int:
        """Tokens of text a sequence holds: ``max_seq_length`` less the special tokens."""
        return max(self._max_seq_length - self.special_tokens, 0)

    def _long_text_encoding(self, text: str, need: int):
        """The encoding, without special tokens and truncated to ``max_seq_length`` tokens, of a
        prefix of ``text`` whose first ``need`` tokens are the whole text's own."""
        cut = max(need, 1) * CHARS_PER_TOKEN_WINDOW  # never 0: a limit of 0 tokens would loop forever
        while True:
            cut = min(cut, MAX_PREFIX_CHARS)
            prefix = text[:cut]
            # Without special tokens, truncation keeps max_seq_length tokens and hands the rest
            # over as overflowing pieces, whose word ids say where the prefix's last word is
            # (no untruncated copy of the tokenizer: a 250k-piece one holds ~140 MiB).
            encoding = self.tokenizer.encode(prefix, add_special_tokens=False)
            if cut >= len(text) or cut == MAX_PREFIX_CHARS:
                return encoding
            tail = encoding.overflowing[-1] if encoding.overflowing else encoding
            last = max((w for w in tail.word_ids if w is not None), default=None)
            if last is not None:
                trusted = sum(1 for w in encoding.word_ids if w is not None and w < last - 1)
                if trusted >= need:
                    return encoding
            cut *= 4

    def _long_text_ids(self, text: str) -> np.ndarray:
        encoding = self._long_text_encoding(text, self._content_limit())
        # truncation and special tokens exactly as encode() applies them
        return np.asarray(self.tokenizer.post_process(encoding).ids, dtype=np.int64)

    def _full_count(self, text: str) -> int:
        """Tokens of ``text`` (already prepared) without truncation or special tokens: the
        truncated tokens and their overflow."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return len(encoding.ids) + sum(len(piece.ids) for piece in encoding.overflowing)

    def encode(self, texts, parallel=True) -> list:
        """Token ids of each text.

        Parameters
        ----------
        texts : list of str
        parallel : bool
            False: tokenise on the calling thread only. ``encode_batch`` runs on the tokenizers
            library's own thread pool (one thread per core unless ``$RAYON_NUM_THREADS``), which
            a one-thread caller (a worker given one CPU) must not fan out to.

        Returns
        -------
        list of ndarray of int64, each ``(length,)`` with length <= max_seq_length (the special
        tokens of the tokenizer's post-processor included: 2 for ``[CLS] ... [SEP]`` or ``<s> ... </s>``).
        """
        texts = [self._prepare(t) for t in texts]
        limit = max(self._content_limit(), 1) * CHARS_PER_TOKEN_WINDOW
        short = [i for i, t in enumerate(texts) if len(t) <= limit]
        out = [None] * len(texts)
        batch = [texts[i] for i in short]
        encodings = self._encode_batch(batch) if parallel else [self.tokenizer.encode(t) for t in batch]
        for i, encoding in zip(short, encodings):
            out[i] = np.asarray(encoding.ids, dtype=np.int64)
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = self._long_text_ids(t)
        return out

    def untruncated_length(self, text: str) -> int:
        """Tokens in ``text`` without truncation (the special tokens included), of its first
        :data:`MAX_PREFIX_CHARS` characters."""
        return self._full_count(self._prepare(text)) + self.special_tokens

    def _pair_specials(self):
        """``(cls, sep)`` ids of the pair template ``[CLS] A [SEP] B [SEP]`` (types 0, 0, 1)."""
        encoding = self.tokenizer.encode("", "")
        if len(encoding.ids) != 3 or encoding.type_ids != [0, 0, 1] or encoding.ids[1] != encoding.ids[2]:
            raise ModelFileError(f"{self.path}: the tokenizer does not encode pairs as [CLS] A [SEP] B [SEP] "
                                 f"(an empty pair gives ids {encoding.ids}, types {encoding.type_ids})")
        return encoding.ids[0], encoding.ids[1]

    def encode_pairs(self, pairs) -> tuple:
        """Token ids and token types of sentence pairs, ``[CLS] a [SEP] b [SEP]``.

        Truncated ``longest_first`` to ``max_seq_length`` with the tokenizers library's rule
        (transformers' fast tokenizers): with ``M`` content tokens, a pair that does not fit keeps
        the shorter side whole and cuts the longer one to ``M - shorter``, or, when the shorter
        has more than ``M / 2``, keeps ``M // 2`` of each, the odd token going to the longer side
        (the second on a tie). Each side is tokenised alone (the library's own pair truncation
        builds overflow windows that cost gigabytes for long pairs); a side past the long-text window is tokenised from a
        prefix holding its first ``M + 1`` tokens, and counted whole only when the rule needs
        to know which side is longer.

        Parameters
        ----------
        pairs : list of (str, str)

        Returns
        -------
        ids, types : lists of ndarray of int64, each ``(length,)`` with length <= max_seq_length;
            types are 0 through the first [SEP] and 1 after.
        """
        cls_id, sep_id = self._pair_specials()
        budget = self._max_seq_length - 3
        limit = (self._max_seq_length - 2) * CHARS_PER_TOKEN_WINDOW
        texts = [self._prepare(t) for pair in pairs for t in pair]
        cut = [len(t) > limit for t in texts]  # tokenised from a prefix: only the first budget + 1 tokens
        whole = [t for t, c in zip(texts, cut) if not c]
        encodings = iter(self._encode_batch(whole, add_special_tokens=False))
        # truncated to max_seq_length > budget tokens; counted with the overflow
        sides = [self._long_text_encoding(t, budget + 1) if c else next(encodings) for t, c in zip(texts, cut)]
        ids_out, types_out = [], []
        for i in range(0, len(texts), 2):
            a, b = sides[i].ids, sides[i + 1].ids
            counts = [len(side.ids) + sum(len(piece.ids) for piece in side.overflowing) for side in sides[i:i + 2]]
            for j in (0, 1):
                # a prefix's count (> budget) decides the rule unless the other side is long too
                if cut[i + j] and counts[1 - j] > budget:
                    counts[j] = self._full_count(texts[i + j])
            n_a, n_b = _longest_first(counts[0], counts[1], budget)
            ids_out.append(np.array([cls_id, *a[:n_a], sep_id, *b[:n_b], sep_id], dtype=np.int64))
            types = np.zeros(n_a + n_b + 3, np.int64)
            types[n_a + 2:] = 1
            types_out.append(types)
        return ids_out, types_out


def _longest_first(n_a, n_b, budget):
    """Tokens kept of each side by the tokenizers library's ``longest_first`` rule."""
    if n_a + n_b <= budget:
        return n_a, n_b
    short, long_ = (n_b, n_a) if n_a > n_b else (n_a, n_b)
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short = budget // 2
        long_ = short + budget % 2
    kept_a, kept_b = (long_, short) if n_a > n_b else (short, long_)
    return min(n_a, kept_a), min(n_b, kept_b)


def _read_tokenizer_config(folder: str) -> dict:
    """tokenizer_config.json next to tokenizer.json as a dict ({} when absent or unreadable)."""
    try:
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _pipeline_as_transformers_builds_it(tokenizer, folder: str) -> None:
    """For an XLM-R tokenizer class, the normaliser and pre-tokeniser transformers 5 gives it.

    transformers 5 does not take these from tokenizer.json: it keeps the file's ``Precompiled``
    normaliser (SentencePiece's character map) and nothing else of it, and pre-tokenises with
    ``WhitespaceSplit`` then ``Metaspace``, as SentencePiece itself collapses whitespace. A file
    written by an older transformers often says ``Metaspace`` alone, which would keep whitespace
    runs as ``▁`` pieces that sentence-transformers 6 never sees.
    """
    from tokenizers import normalizers, pre_tokenizers

    config = _read_tokenizer_config(folder)
    if config.get("tokenizer_class") not in SENTENCEPIECE_CLASSES:
        return
    normalizer = tokenizer.normalizer
    parts = list(normalizer) if isinstance(normalizer, normalizers.Sequence) else [normalizer]
    tokenizer.normalizer = next((p for p in parts if isinstance(p, normalizers.Precompiled)), None)
    prepend = "always" if config.get("add_prefix_space", True) else "never"
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)])


def _lowercase_first(tokenizer) -> None:
    """Put a ``Lowercase`` normaliser before the tokenizer's own, unless it already has one:
    sentence-transformers' ``do_lower_case`` (BERT's own lower-casing flag does not count)."""
    from tokenizers.normalizers import Lowercase, Sequence

    normalizer = tokenizer.normalizer
    parts = list(normalizer) if isinstance(normalizer, Sequence) else [] if normalizer is None else [normalizer]
    if not any(isinstance(part, Lowercase) for part in parts):
        tokenizer.normalizer = Sequence([Lowercase()] + parts)


def read_pad_token_id(path: str, tokenizer) -> int:
    """Id of the padding token, as transformers pads: ``pad_token`` of tokenizer_config.json
    (else special_tokens_map.json) next to ``path``, else tokenizer.json's padding id, else 0."""
    folder = os.path.dirname(path)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                token = json.load(f).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    padding = tokenizer.padding
    return int(padding["pad_id"]) if padding else 0
