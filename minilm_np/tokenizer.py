"""Text to token ids with the model's own tokenizer.json, as sentence-transformers does it."""
import os
import re
import threading

import numpy as np

from .errors import ModelFileError

# Texts longer than this many characters per allowed token are tokenised from a prefix.
CHARS_PER_TOKEN_WINDOW = 32
# Never hand the tokenizer more than this many characters of one text.
MAX_PREFIX_CHARS = 1 << 20
# str.strip()'s whitespace (re's \s is str.isspace() for str patterns).
_LEADING_SPACE = re.compile(r"\s*")


class TextTokenizer:
    """WordPiece tokenisation without padding, truncated at ``max_seq_length`` (specials included).

    Parameters
    ----------
    path : str
        ``tokenizer.json`` of the model.
    max_seq_length : int
    do_lower_case : bool
        Lower-case texts first (sentence_bert_config.json's flag).

    Notes
    -----
    Each text is stripped of surrounding whitespace, as sentence-transformers does. A very long
    text is tokenised from a prefix just long enough to yield ``max_seq_length`` tokens that a
    longer prefix could not change (the last two words of the prefix are not trusted), so a
    100 MB text costs no more than a page; a text whose first :data:`MAX_PREFIX_CHARS`
    characters do not hold enough words is tokenised from those characters alone. Lone
    surrogates (``"\\ud800"``), which cannot be encoded as UTF-8 and which the tokenizers
    library refuses, become U+FFFD, which BERT's normaliser then drops; a high and a low
    surrogate in a row (UTF-16 decoded as code units) are joined into their character.
    Thread-safe: encoding never changes tokenizer settings.
    """

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
        self.tokenizer.no_padding()
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which nothing here
        # reads: the bench corpus 0.11 -> 0.09 s (2 threads), same ids
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self._untruncated_copy = None
        self._copy_lock = threading.Lock()
        self.max_seq_length = max_seq_length

    @property
    def _untruncated(self):
        """A never-truncated copy, for the long-text path's whole prefixes.

        A copy spares toggling truncation on the shared tokenizer, which races when threads
        share a model; it is made on first use because each tokenizer holds ~9 MiB.
        """
        if self._untruncated_copy is None:
            from tokenizers import Tokenizer

            with self._copy_lock:
                if self._untruncated_copy is None:
                    copy = Tokenizer.from_str(self.tokenizer.to_str())
                    copy.no_truncation()
                    self._untruncated_copy = copy
        return self._untruncated_copy

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
        # Cut before any whole-text work (strip, lower, UTF-8 check) so that a 100 MB text is
        # never copied; the regex finds where str.strip() would start without copying.
        start = _LEADING_SPACE.match(text).end()
        text = text[start:start + MAX_PREFIX_CHARS].rstrip()
        if self.do_lower_case:
            text = text.lower()
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def _trusted_prefix(self, text: str, need: int = 0):
        """``(prefix, encoding)``: a prefix of ``text`` whose first ``max(need, max_seq_length - 2)``
        tokens are the text's own, and its untruncated encoding (None when the prefix is cut at
        :data:`MAX_PREFIX_CHARS` or is the whole text)."""
        need = max(need, self._max_seq_length - 2)
        cut = max(need, 1) * CHARS_PER_TOKEN_WINDOW  # never 0: max_seq_length 2 would loop forever
        while True:
            cut = min(cut, MAX_PREFIX_CHARS)
            prefix = text[:cut]
            if cut >= len(text) or cut == MAX_PREFIX_CHARS:
                return prefix, None
            encoding = self._untruncated.encode(prefix)
            words = [w for w in encoding.word_ids if w is not None]
            if words:
                trusted = sum(1 for w in words if w < words[-1] - 1)
                if trusted >= need:
                    return prefix, encoding
            cut *= 4

    def _long_text_ids(self, text: str) -> np.ndarray:
        prefix, encoding = self._trusted_prefix(text)
        if encoding is None:
            return np.asarray(self.tokenizer.encode(prefix).ids, dtype=np.int64)
        ids = encoding.ids
        need = self._max_seq_length - 2
        return np.asarray(ids[:need + 1] + ids[-1:], dtype=np.int64)

    def encode(self, texts) -> list:
        """Token ids of each text.

        Parameters
        ----------
        texts : list of str

        Returns
        -------
        list of ndarray of int64, each ``(length,)`` with 2 <= length <= max_seq_length.
        """
        texts = [self._prepare(t) for t in texts]
        limit = (self._max_seq_length - 2) * CHARS_PER_TOKEN_WINDOW
        short = [i for i, t in enumerate(texts) if len(t) <= limit]
        out = [None] * len(texts)
        for i, encoding in zip(short, self._encode_batch([texts[i] for i in short])):
            out[i] = np.asarray(encoding.ids, dtype=np.int64)
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = self._long_text_ids(t)
        return out

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
        (the second on a tie). Each side is tokenised alone (no overflow windows, which for long
        pairs cost the library gigabytes); a side past the long-text window is tokenised from a
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
        encode = getattr(self._untruncated, "encode_batch_fast", self._untruncated.encode_batch)
        sides = [e.ids for e in encode([self._trusted_prefix(t)[0] if c else t for t, c in zip(texts, cut)],
                                       add_special_tokens=False)]
        ids_out, types_out = [], []
        for i in range(0, len(texts), 2):
            a, b = sides[i], sides[i + 1]
            counts = [len(a), len(b)]
            for j in (0, 1):
                # a prefix's count (> budget) decides the rule unless the other side is long too
                if cut[i + j] and counts[1 - j] > budget:
                    counts[j] = len(self._untruncated.encode(texts[i + j], add_special_tokens=False).ids)
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
