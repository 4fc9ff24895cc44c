"""WordPiece tokenization as multilingual BERT does it, written from scratch, plus a fast path.

What it does:
  * `WordPieceTokenizer.tokenize` is google's `FullTokenizer` (BasicTokenizer + WordPiece) in plain
    Python, with HF's two changes: special tokens are never split, and words over 100 characters
    become [UNK]. The function names follow google-research/bert `tokenization.py`.
  * `tokenize_fast`, `encode_words` and `encode_batch_words` go through huggingface `tokenizers`
    and give the same pieces; training uses them. The tests check this on every sentence we have.
  * `train_vocab` builds a small WordPiece vocab for runs without a pretrained checkpoint.
  * `steps` shows what each step makes of a text; `python -m minibert_ner.tools.tokenize` prints
    them, and wordpieces per word on files (the "WordPiece fertility" row of the paper's Table 2).

What it leaves out: NFC normalisation (HF's slow tokenizer added it in 2023; google's original and
the fast path do not). NFD input such as "a\u0301" therefore gives ['a', '##\u0301'] in the cased
vocab. Apply `unicodedata.normalize("NFC", text)` yourself before tokenizing if your text needs
it: it is an explicit optional step, never hidden here. Also left out: sequence pairs and [CLS]/[SEP]
insertion, which belong to the code that builds model inputs.
Spec: shared/WORDPIECE.md. Rare characters where slow and fast differ (private-use chars, CJK
U+2B820-U+2B91F, punctuation newer than tokenizers' Unicode tables, Greek final sigma when
lowercasing) are named xfail tests in tests/test_tokenizer.py; none occurs in our corpora.
"""
import functools
import json
import re
import unicodedata
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers

from .files import write_text

# The five tokens BERT needs. Their ids are looked up in the vocab, never assumed.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100  # HF and tokenizers; google's original used 200


def says_lowercase(folder):
    """Hugging Face folders of uncased models say do_lower_case in tokenizer_config.json."""
    path = Path(folder) / "tokenizer_config.json"
    return path.is_file() and bool(json.loads(path.read_text(encoding="utf-8")).get("do_lower_case", False))


class VocabError(ValueError):
    """A vocab file that is missing or unusable; the message names the file."""


def load_vocab(path):
    """Read vocab.txt the way HF does: line index = id, `rstrip("\\n")` (universal newlines, so CRLF works)."""
    path = Path(path)
    if not path.is_file():
        raise VocabError(f"{path}: vocab file not found (expected a WordPiece vocab.txt, one token per line)")
    try:
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise VocabError(f"{path}:{line}: not UTF-8 (byte {error.start}); vocab.txt files are UTF-8") from None
    vocab = {}
    for index, token in enumerate(tokens):
        if token in vocab:  # two ids for one string would make id -> token -> id lossy
            raise VocabError(f"{path}:{index + 1}: duplicate token {token!r} (first on line {vocab[token] + 1})")
        vocab[token] = index
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise VocabError(f"{path}: vocab lacks the special token(s) {missing}; "
                         f"BERT needs all of {list(SPECIAL_TOKENS)}")
    return vocab


# ---------------------------------------------------------------------------------------------
# Character classes, exactly as in google's tokenization.py.

def _is_whitespace(char):
    # \t \n \r count as whitespace here even though Unicode calls them control characters.
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"  # Zs: NBSP, ideographic space...


def _is_control(char):
    if char in "\t\n\r":
        return False
    # Cc: C0/C1 controls. Cf: invisible format chars: soft hyphen, ZWJ/ZWNJ, LRM/RLM, BOM.
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    # All non-letter/number ASCII counts, even $ ^ ` + < = > | ~ which Unicode files as symbols (S*).
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    # Beyond ASCII only real punctuation (P*) splits: "5€" and emoji stay inside their word.
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    # The ideograph blocks: URO, Ext A, Ext B, Ext C, Ext D, Ext E-F, and two compatibility blocks.
    # Written out as google does (no loop) because this runs once per character of the corpus.
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF)
            or (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF)
            or (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))


# ---------------------------------------------------------------------------------------------
# The BasicTokenizer steps, one function each. Walk-through with cased mBERT
# (`python -m minibert_ner.tools.tokenize --steps TEXT` prints this for any text):
#   text                      "Köln\xad's Rheinufer-Café 中文"
#   _clean_text               "Köln's Rheinufer-Café 中文"           soft hyphen deleted
#   _tokenize_chinese_chars   "Köln's Rheinufer-Café  中  文 "        ideographs isolated
#   whitespace split          ["Köln's", "Rheinufer-Café", "中", "文"]
#   _run_split_on_punc        ["Köln", "'", "s", "Rheinufer", "-", "Café", "中", "文"]
#   wordpiece, per word       ["Köln", "'", "s", "Rhein", "##ufer", "-", "Café", "中", "文"]
# Cased mBERT stops there; an uncased vocab also lowercases and strips accents before the
# punctuation split ("Café" -> "cafe").

def _clean_text(text):
    """Drop NUL, U+FFFD and control characters; turn every whitespace character into " "."""
    output = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue  # deleted, so "Köln\xad" is just "Köln" and "\xad" alone is nothing
        output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


def _tokenize_chinese_chars(text):
    """Put spaces around each CJK ideograph, so every one becomes its own word."""
    output = []
    for char in text:
        if _is_chinese_char(ord(char)):
            output.extend((" ", char, " "))
        else:
            output.append(char)
    return "".join(output)


def _run_strip_accents(text):
    """NFD splits "é" into "e" + U+0301; then drop every combining mark (Mn). Nothing is recomposed."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _run_split_on_punc(text):
    """Split one word into runs of non-punctuation and single punctuation characters."""
    output = []  # list of lists of chars; a new list starts at and after every punctuation char
    start_new_word = True
    for char in text:
        if _is_punctuation(char):
            output.append([char])
            start_new_word = True
        else:
            if start_new_word:
                output.append([])
            start_new_word = False
            output[-1].append(char)
    return ["".join(chars) for chars in output]


def split_words(text):
    """Where basic tokenization's words are in `text`: (start, end) character offsets, end exclusive.

    The same walk as _clean_text + _tokenize_chinese_chars + whitespace split + punctuation
    split, on the original characters, so an entity can be shown as written (an uncased
    model's words are lowercased copies). A deleted character (control, U+FFFD) inside a word
    stays inside its span. `words_and_spans` checks the result against basic_tokenize; the
    Unigram tokenizer splits raw text into words with it too."""
    spans, start, end = [], None, None
    for i, char in enumerate(text):
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue  # deleted: neither part of a word nor a boundary ("Köln\xad" is "Köln")
        if _is_whitespace(char) or _is_chinese_char(cp) or _is_punctuation(char):
            if start is not None:
                spans.append((start, end))
                start = None
            if not _is_whitespace(char):  # an ideograph or a punctuation mark: a word of its own
                spans.append((i, i + 1))
        else:
            start = i if start is None else start
            end = i + 1
    if start is not None:
        spans.append((start, end))
    return spans


def align_words(n_words, encoding, unk_id):
    """A `tokenizers` encoding of pre-split words -> (piece ids, word index of each piece), with
    the unknown piece for any word that produced none."""
    # encoding.word_ids says which input word each piece came from: (T,) ints, non-decreasing.
    if len(set(encoding.word_ids)) == n_words:  # the common case: every word has a piece
        return encoding.ids, encoding.word_ids
    pieces_per_word = [[] for _ in range(n_words)]
    for piece_id, word_index in zip(encoding.ids, encoding.word_ids):
        pieces_per_word[word_index].append(piece_id)
    ids, word_ids = [], []
    for word_index, word_pieces in enumerate(pieces_per_word):
        # A word made only of deleted characters ("\xad") would vanish and take its label
        # with it; giving it the unknown piece keeps one piece per labelled word.
        word_pieces = word_pieces or [unk_id]
        ids.extend(word_pieces)
        word_ids.extend([word_index] * len(word_pieces))
    return ids, word_ids


class PieceEncoder:
    """What WordPiece and Unigram (unigram.py) share once their `tokenizers` pipeline (`fast`) and
    their vocabulary (`vocab`: piece -> id, `inv_vocab`: id -> piece, `unk_token_id`) exist: the
    encoding of pre-split words that training uses, and ids <-> pieces."""

    def tokenize_fast(self, text):
        """Same pieces as `tokenize`, from the Rust implementation."""
        return self.fast.encode(text, add_special_tokens=False).tokens

    def encode_words(self, words):
        """Pre-split words -> (piece ids, word index of each piece). No [CLS]/[SEP] (<s>, </s>)."""
        encoding = self.fast.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        return align_words(len(words), encoding, self.unk_token_id)

    def encode_batch_words(self, sentences):
        """`encode_words` for many sentences at once (tokenizers runs the batch in parallel)."""
        sentences = [list(words) for words in sentences]
        encodings = self.fast.encode_batch(sentences, is_pretokenized=True, add_special_tokens=False)
        return [align_words(len(words), e, self.unk_token_id) for words, e in zip(sentences, encodings)]

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab.get(token, self.unk_token_id) for token in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.inv_vocab[i] for i in ids]


class WordPieceTokenizer(PieceEncoder):
    """BERT's tokenizer: from-scratch `tokenize`, and `tokenize_fast`/`encode_words` through `tokenizers`."""

    vocab_file = "vocab.txt"  # what a model folder stores it in
    metaspace_id = None       # no piece stands for "a word starts here" alone (SentencePiece's "▁" does)

    def __init__(self, vocab, lowercase=False):
        self.vocab = dict(vocab)  # token -> id
        self.inv_vocab = [None] * len(self.vocab)  # id -> token
        for token, index in self.vocab.items():
            self.inv_vocab[index] = token
        self.lowercase = lowercase
        # the special tokens' ids, from the vocab itself (load_vocab checked that each is there)
        self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id = (
            self.vocab[token] for token in SPECIAL_TOKENS)
        # Special tokens are matched in the raw text before anything else (HF's never_split), so a
        # literal "[MASK]" stays one token instead of becoming "[", "MASK", "]" as in google's code.
        self.special_pattern = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS)) + ")")
        # No vocab entry is longer than this, so longer candidate substrings need not be tried.
        self.max_piece_chars = max(len(t[2:] if t.startswith("##") else t) for t in self.vocab)
        # The same word recurs constantly in a corpus: remember the pieces of each space-separated
        # chunk (per instance, bounded; tuples, so no caller can change a cached answer).
        self._cached_tokenize_chunk = functools.lru_cache(maxsize=1 << 18)(self._tokenize_chunk)
        self._fast = None  # the `tokenizers` pipeline, built on first use
        self.source_ids = None  # after keep_only: the ids these pieces had in the full vocabulary

    @classmethod
    def from_file(cls, vocab_path, lowercase=False):
        """Load a vocab.txt; use lowercase=True only for uncased vocabularies."""
        return cls(load_vocab(vocab_path), lowercase=lowercase)

    @classmethod
    def from_pretrained(cls, folder_or_id):
        """The tokenizer of a model folder or hub id: its vocab.txt, lowercasing (or not) as its
        tokenizer_config.json says. (`from_file` cannot know: a vocab.txt does not say it is uncased.)"""
        folder = Path(folder_or_id)
        if not folder.exists():
            from .hub import model_folder  # a hub id: fetched once into the Hugging Face cache
            folder = model_folder(str(folder_or_id))
        return cls.from_file(folder / "vocab.txt", lowercase=says_lowercase(folder))

    def __len__(self):
        return len(self.inv_vocab)

    def tokenizer_files(self, max_positions):
        """{file name: text}: vocab.txt plus the two files that tell Hugging Face's AutoTokenizer how
        to use it. Without them it guesses: it lowercases a cased model and lets texts run past the
        model's positions."""
        special = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                       mask_token="[MASK]")
        config = dict(tokenizer_class="BertTokenizer", do_lower_case=self.lowercase, strip_accents=None,
                      tokenize_chinese_chars=True, model_max_length=max_positions, **special)
        dump = lambda d: json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        return {"vocab.txt": "".join(token + "\n" for token in self.inv_vocab),
                "special_tokens_map.json": dump(special), "tokenizer_config.json": dump(config)}

    def keep_only(self, used):
        """(a tokenizer of the pieces `used` and the special tokens only, the old ids it keeps in
        order: old id keep[k] is new id k), for --trim-vocab. Every word that gave only `used`
        pieces splits as before: greedy longest-match never picked a piece it did not use."""
        keep = sorted(set(used) | {self.vocab[t] for t in SPECIAL_TOKENS})
        small = WordPieceTokenizer({self.inv_vocab[i]: k for k, i in enumerate(keep)}, self.lowercase)
        small.source_ids = keep
        return small, keep

    # ----- the slow path, from scratch --------------------------------------------------------

    def words_and_spans(self, text):
        """basic_tokenize's words and, for each, its (start, end) in `text` (None if not found)."""
        words = self.basic_tokenize(text)
        spans = split_words(text)
        as_seen = [self.basic_tokenize(text[a:b]) for a, b in spans]
        if [w for seen in as_seen for w in seen] == words and all(len(seen) <= 1 for seen in as_seen):
            return words, [span for span, seen in zip(spans, as_seen) if seen]  # (accents can empty a word)
        return words, [None] * len(words)  # a text whose normalisation moved word boundaries

    def basic_tokenize(self, text):
        """Clean, isolate CJK, split on whitespace, (lowercase and strip accents), split punctuation."""
        # The order matters: cleaning first turns NBSP etc. into spaces, so the split below sees them.
        text = _tokenize_chinese_chars(_clean_text(text))
        words = []
        for token in text.split():  # google's whitespace_tokenize
            if self.lowercase:  # uncased models only; cased mBERT keeps case AND accents
                token = _run_strip_accents(token.lower())
            words.extend(_run_split_on_punc(token))
        # Stripping accents can empty a token ("\u0301" alone), so split once more to drop blanks.
        return " ".join(words).split()

    def wordpiece(self, word):
        """Greedy longest-match-first: "unaffable" -> ["un", "##aff", "##able"]; no match -> ["[UNK]"]."""
        if len(word) > MAX_INPUT_CHARS_PER_WORD:  # len() counts code points, as Rust's chars() does
            return ["[UNK]"]
        # Example with "unaffable": try "unaffable", "unaffabl", ... until "un" is in the vocab;
        # then "##affable", "##affabl", ... until "##aff"; then "##able". Greedy, not optimal:
        # it never backtracks, so a word that has a segmentation can still end up as [UNK].
        pieces = []
        start = 0
        while start < len(word):
            # Try the longest substring first, shrinking from the right until the vocab knows it.
            end = min(len(word), start + self.max_piece_chars)
            piece = None
            while start < end:
                candidate = word[start:end]
                if start > 0:
                    candidate = "##" + candidate  # "##" marks a piece that continues a word
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                # No piece fits here. BERT does not keep the pieces found so far: the word is lost.
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        """Text -> wordpieces, in pure Python. No [CLS]/[SEP] are added."""
        pieces = []
        # A plain space always separates words and is never deleted, and no special token holds
        # one, so each space-separated chunk can be tokenized on its own (and cached).
        for chunk in text.split(" "):
            pieces.extend(self._cached_tokenize_chunk(chunk))
        return pieces

    def _tokenize_chunk(self, chunk):
        # Step 0 (HF's never_split): cut the special tokens out before any cleaning, so that
        # lowercasing and the punctuation split never see them.
        pieces = []
        # re.split with a group keeps the separators: odd positions hold the special tokens.
        for i, part in enumerate(self.special_pattern.split(chunk)):
            if i % 2 == 1:
                pieces.append(part)
                continue
            for word in self.basic_tokenize(part):
                pieces.extend(self.wordpiece(word))
        return tuple(pieces)

    # ----- the fast path, through huggingface/tokenizers -------------------------------------

    @property
    def fast(self):
        """The equivalent `tokenizers.Tokenizer` (Rust), built once on first use."""
        if self._fast is None:
            fast = Tokenizer(models.WordPiece(self.vocab, unk_token="[UNK]",
                                              max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
            # strip_accents=lowercase is BERT's default: uncased vocabularies also strip accents.
            fast.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True,
                strip_accents=self.lowercase, lowercase=self.lowercase)
            fast.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            # AddedTokens with normalized=False are matched in the raw text, before normalization.
            fast.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
            self._fast = fast
        return self._fast


    def steps(self, text):
        """What each BasicTokenizer step makes of `text`, as (step, result) pairs, the wordpieces last
        (`python -m minibert_ner.tools.tokenize --steps` prints them; special tokens are not cut out here)."""
        steps = [("text", text), ("_clean_text", _clean_text(text))]
        steps.append(("_tokenize_chinese_chars", _tokenize_chinese_chars(steps[-1][1])))
        steps.append(("whitespace split", steps[-1][1].split()))
        if self.lowercase:
            steps.append(("lower + _run_strip_accents", [_run_strip_accents(t.lower()) for t in steps[-1][1]]))
        steps.append(("_run_split_on_punc", [w for t in steps[-1][1] for w in _run_split_on_punc(t)]))
        steps.append(("wordpiece, per word", [p for w in steps[-1][1] for p in self.wordpiece(w)]))
        return steps


def learn_vocab(words, vocab_size):
    """Learn a small cased WordPiece vocab from `words`, deterministically: its tokens, in id order.

    Not Google's WordPiece training (a likelihood-driven merge procedure) but its simplest
    deterministic stand-in, enough for the demo's small random BERT: the special tokens (ids 0-4),
    every character seen, word-initial and (where it can continue a word) as a "##" continuation
    (so every word made of seen characters can be spelt: no [UNK]), then the most frequent whole
    words, then the most frequent word endings ("##ing") while room remains. Ties break
    alphabetically, so the same words always give the same file. `tokenizers`' WordPieceTrainer
    does not (its ties follow hash order), and two runs with the same --seed would then train
    different models.
    """
    counts = {}
    for word in words:  # basic tokenization as the tokenizer will see it, cased
        for token in _tokenize_chinese_chars(_clean_text(word)).split():
            for piece in _run_split_on_punc(token):
                counts[piece] = counts.get(piece, 0) + 1
    chars = sorted({c for piece in counts for c in piece})
    # A "##" continuation only for characters that can continue a word: an ideograph or a
    # punctuation mark is always a word of its own (basic tokenization splits them off), and a
    # "##中" would be a wasted entry (thousands of them for Chinese).
    continuing = [c for c in chars if not (_is_chinese_char(ord(c)) or _is_punctuation(c))]
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in continuing]
    endings = {}
    for piece, n in counts.items():
        for k in range(2, min(5, len(piece))):  # endings of 2-4 characters of longer words
            endings["##" + piece[-k:]] = endings.get("##" + piece[-k:], 0) + n
    by_frequency = lambda table: [t for t, _ in sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))]
    known = set(vocab)
    for token in by_frequency(counts) + by_frequency(endings):
        if len(vocab) >= vocab_size:
            break
        if token not in known:
            vocab.append(token)
            known.add(token)
    return vocab


def train_vocab(words, vocab_size, path):
    """`learn_vocab`, written to vocab.txt at `path`; returns the path."""
    vocab = learn_vocab(words, vocab_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(token + "\n" for token in vocab))  # a reader never sees it half written
    return path
