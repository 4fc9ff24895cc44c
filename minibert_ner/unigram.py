"""SentencePiece Unigram tokenization (XLM-R's, which multilingual-e5-small uses), from scratch, plus a fast path.

mBERT splits words greedily into WordPieces (tokenizer.py). XLM-R and the models built on its
vocabulary (multilingual-e5-small, multilingual MiniLM) use SentencePiece's Unigram model instead:
every piece has a score (a log-probability), and a word is split into the pieces whose scores sum
highest. Three steps, one function each, as `tokenizers` runs them from a tokenizer.json:

  normalize    a table maps single characters to replacements: full-width and compatibility forms
               to plain ones ("Ａ" -> "A", "ﬁ" -> "fi"), control characters to nothing, odd spaces
               to " "; then runs of spaces become one
  pre_tokenize " " becomes the metaspace "▁", a "▁" is put before the text, and the text is cut
               before every "▁": "Köln liegt" -> ["▁Köln", "▁liegt"]
  viterbi      the best-scoring split of each part into pieces (dynamic programming); a character
               no piece covers becomes <unk> (consecutive ones fused into one <unk>)

Walk-through (`python -m minibert_ner.tools.tokenize --model DIR --steps TEXT` prints it for any text):
  text          "Ｋöln  liegt."
  normalize     "Köln liegt."
  pre_tokenize  ["▁Köln", "▁liegt."]
  viterbi       ["▁Köln", "▁liegt", "."]

The table is stored as SentencePiece stores it, a "precompiled charsmap" (a double-array trie
over UTF-8 bytes, `read_charsmap` / `build_charsmap` below). `tokenizers` applies it per grapheme
(a character with the marks that combine with it): a grapheme shorter than 6 bytes whose first
character is in the table is replaced WHOLE by that character's replacement, so "\\r\\n" -> " "
and "ｶ" + U+0301 -> "カ". `normalize` does the same; its test of "combines with the previous
character" is Unicode's grapheme rule for marks, joiners and CR LF, from `unicodedata` (rare rules,
emoji ZWJ sequences after a mapped character, are left out: tests/test_unigram.py names them).
A hub tokenizer.json whose table also has multi-character keys (XLM-R's own) is normalised
through `tokenizers`' Precompiled normaliser; pre-tokenization and Viterbi stay ours.

`tokenize` is the from-scratch path; `encode_words` / `encode_batch_words` (tokenizer.PieceEncoder,
shared with WordPiece) go through `tokenizers` (Rust) and give the same ids, which training uses. The tests check this on every
word of every corpus we have. Same interface as WordPieceTokenizer: special ids, `encode_words`,
`decode`, `from_pretrained`. Left out: training a Unigram vocabulary, byte fallback, sampling
(subword regularisation), sentence pairs.
"""
import json
import struct
import unicodedata
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from .tokenizer import PieceEncoder, VocabError, WordPieceTokenizer, says_lowercase, split_words

METASPACE = "\u2581"  # "▁": SentencePiece's visible stand-in for a space
# XLM-R's five special pieces, by role. Their ids come from the vocabulary, never assumed.
SPECIAL_TOKENS = dict(cls="<s>", pad="<pad>", sep="</s>", unk="<unk>", mask="<mask>")
UNK_PENALTY = 10.0  # an unknown character scores 10 below the rarest piece (SentencePiece's constant)


# ---------------------------------------------------------------------------------------------
# The normalisation table: SentencePiece's "precompiled charsmap".
#
# Bytes: u32 n = the trie's size in bytes, n / 4 u32 units (a double-array trie over the keys' UTF-8
# bytes), then the replacements, each ending in a NUL byte. A node sits at a position p of the
# array; its unit holds its label (the byte that leads to it, bits 0-7), whether a key ends there
# (bit 8) and an offset (bits 10-30, shifted left 8 more when bit 9 is set). Its children are at
# (p ^ offset) ^ byte, and where a key ends, (p ^ offset) itself holds the value unit: bit 31 set,
# the rest the replacement's position in the string blob. The root's offset is in unit 0.


def _offset(unit):
    return (unit >> 10) << ((unit & (1 << 9)) >> 6)


def read_charsmap(blob):
    """Precompiled charsmap bytes -> {key: replacement}, by walking every path of the trie."""
    (size,) = struct.unpack_from("<I", blob)
    units = struct.unpack_from(f"<{size // 4}I", blob, 4)
    strings = blob[4 + size:]
    table = {}
    stack = [(_offset(units[0]), b"")]  # (where this node's children start, its key so far)
    while stack:
        base, key = stack.pop()
        for byte in range(1, 256):
            pos = base ^ byte
            if pos >= len(units) or units[pos] & ((1 << 31) | 0xFF) != byte:
                continue  # no child with this label
            child = pos ^ _offset(units[pos])
            if units[pos] >> 8 & 1:  # a key ends here: its value unit sits at `child`
                start = units[child] & ((1 << 31) - 1)
                table[(key + bytes([byte])).decode("utf-8")] = \
                    strings[start:strings.index(b"\0", start)].decode("utf-8")
            stack.append((child, key + bytes([byte])))
    return table


def build_charsmap(table):
    """{key: replacement} -> Precompiled charsmap bytes that `read_charsmap` and `tokenizers` read.

    The trie is laid out breadth first: each node gets the first free `base` at which every one of
    its children's slots (base ^ byte) is free, so the array stays dense."""
    blob, where = bytearray(), {}
    for key in sorted(table):
        where[key] = len(blob)
        blob += table[key].encode("utf-8") + b"\0"
    root = {}  # the trie as nested dicts: byte -> child; label 0 marks "a key ends here"
    for key in table:
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = where[key]
    units, used, bases = [0], bytearray(1 << 16), set()
    used[0] = 1

    def place(labels):
        free = 1
        while True:
            free = used.find(0, free)  # C-speed search for the next free slot
            base = free ^ labels[0]
            if base not in bases and not any(used[base ^ c] for c in labels):
                break
            free += 1
        bases.add(base)
        for c in labels:
            used[base ^ c] = 1
        return base

    base = place(sorted(root))
    units[0] = base << 10
    queue = [(root, base)]
    for node, base in queue:  # grows while it is walked: breadth first
        for label, child in sorted(node.items()):
            pos = base ^ label
            units.extend([0] * (pos + 1 - len(units)))
            if label == 0:
                units[pos] = child | (1 << 31)
            else:
                child_base = place(sorted(child))
                units[pos] = ((pos ^ child_base) << 10) | label | ((0 in child) << 8)
                queue.append((child, child_base))
    # readers look up base ^ byte for any byte without a bounds check: every such slot must exist
    units.extend([0] * (max(b | 0xFF for b in bases) + 1 - len(units)))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


# ---------------------------------------------------------------------------------------------
# Graphemes, as far as the normaliser needs them: does `char` combine with the one before it?

# Myanmar and Tai Tham vowel signs that Unicode files as spacing marks but does not join (UAX #29)
_NOT_SPACING_MARKS = {0x102B, 0x102C, 0x1038, *range(0x1062, 0x1065), *range(0x1067, 0x106E), 0x1083,
                      *range(0x1087, 0x108D), 0x108F, *range(0x109A, 0x109D), 0x1A61, 0x1A63, 0x1A64,
                      0xAA7B, 0xAA7D, 0x11720, 0x11721}
# joiners, halfwidth kana voicing marks and Thai/Lao AM that combine though not filed as marks
_ALSO_EXTEND = {0x200C, 0x200D, 0xFF9E, 0xFF9F, 0x0E33, 0x0EB3, *range(0x1F3FB, 0x1F400), *range(0xE0020, 0xE0080)}
_PREPEND = {*range(0x600, 0x606), 0x6DD, 0x70F, 0x890, 0x891, 0x8E2, 0xD4E}  # Arabic number signs etc.


def _is_control(char):
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or (
        unicodedata.category(char) == "Cf" and ord(char) not in _ALSO_EXTEND and ord(char) not in _PREPEND)


def combines(previous, char):
    """Unicode's grapheme rules GB3-GB9b: CR LF stay together; nothing combines with or into a
    control character; marks (Mn, Me, most Mc), joiners and emoji modifiers extend the grapheme."""
    if previous == "\r":
        return char == "\n"
    if _is_control(previous) or _is_control(char):
        return False
    cp = ord(char)
    category = unicodedata.category(char)
    return (category in ("Mn", "Me") or (category == "Mc" and cp not in _NOT_SPACING_MARKS)
            or cp in _ALSO_EXTEND or ord(previous) in _PREPEND)


# ---------------------------------------------------------------------------------------------


class UnigramTokenizer(PieceEncoder):
    """XLM-R's tokenizer: from-scratch `tokenize`, and `encode_words` through `tokenizers`."""

    vocab_file = "tokenizer.json"  # what a model folder stores it in

    def __init__(self, pieces, scores, unk_id, charsmap):
        """pieces: the vocabulary (id -> piece); scores: their log-probabilities; charsmap: the
        precompiled normalisation table (bytes)."""
        if len(pieces) != len(scores):
            raise VocabError(f"{len(pieces)} pieces but {len(scores)} scores")
        self.inv_vocab = list(pieces)
        self.scores = [float(s) for s in scores]
        self.vocab = {piece: i for i, piece in enumerate(self.inv_vocab)}
        if len(self.vocab) != len(self.inv_vocab):
            raise VocabError("the vocabulary holds a piece twice")
        missing = [t for t in SPECIAL_TOKENS.values() if t not in self.vocab]
        if missing:
            raise VocabError(f"the vocabulary lacks the special piece(s) {missing}")
        self.cls_token_id = self.vocab[SPECIAL_TOKENS["cls"]]
        self.sep_token_id = self.vocab[SPECIAL_TOKENS["sep"]]
        self.pad_token_id = self.vocab[SPECIAL_TOKENS["pad"]]
        self.mask_token_id = self.vocab[SPECIAL_TOKENS["mask"]]
        self.unk_token_id = unk_id
        self.metaspace_id = self.vocab.get(METASPACE)  # the bare "▁" that starts some words ("." -> "▁" ".")
        self.lowercase = False  # SentencePiece vocabularies are cased; the table does what folding there is
        self.unk_score = min(self.scores) - UNK_PENALTY
        self.max_piece_chars = max(len(p) for p in self.inv_vocab)
        self.charsmap = bytes(charsmap)
        self.table = read_charsmap(self.charsmap)
        # XLM-R's own table also maps character sequences ("e" + U+0301 -> "é"); that one we hand
        # to `tokenizers` (see the module docstring). Ours map single characters only.
        self.precompiled = None
        if any(len(key) > 1 for key in self.table):
            self.precompiled = normalizers.Precompiled(self.charsmap)
        self._fast = None
        self._cache = {}
        self.source_ids = None  # after keep_only: the ids these pieces had in the full vocabulary

    # ----- reading and writing tokenizer.json ------------------------------------------------

    @classmethod
    def from_file(cls, path):
        """A Hugging Face tokenizer.json whose model is Unigram (as XLM-R's)."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            model = spec["model"]
            if model.get("type") != "Unigram":
                raise VocabError(f"{path}: the model is {model.get('type')!r}, not Unigram; minibert_ner "
                                 f"reads WordPiece from vocab.txt and Unigram from tokenizer.json")
            pieces, scores = zip(*model["vocab"])
            charsmap = _find_charsmap(spec.get("normalizer"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            if isinstance(error, VocabError):
                raise
            raise VocabError(f"{path}: not a readable Unigram tokenizer.json ({type(error).__name__}: "
                             f"{error})") from None
        if charsmap is None:
            raise VocabError(f"{path}: the normalizer has no Precompiled charsmap; minibert_ner reads "
                             f"SentencePiece (XLM-R style) tokenizer.json files only")
        return cls(pieces, scores, model.get("unk_id", 3), charsmap)

    @classmethod
    def from_pretrained(cls, folder_or_id):
        """The tokenizer of a model folder or hub id: its tokenizer.json."""
        folder = Path(folder_or_id)
        if not folder.exists():
            from .hub import model_folder  # a hub id: fetched once into the Hugging Face cache
            folder = model_folder(str(folder_or_id))
        return cls.from_file(folder / "tokenizer.json")

    def to_json(self):
        """tokenizer.json text, the XLM-R layout: `tokenizers` and transformers read it as it is."""
        return self.fast.to_str(pretty=False)

    def tokenizer_files(self, max_positions):
        """{file name: text}: what a checkpoint folder needs for transformers' AutoTokenizer."""
        special = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                       unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
        config = dict(tokenizer_class="XLMRobertaTokenizer", model_max_length=max_positions, **special)
        dump = lambda d: json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        return {"tokenizer.json": self.to_json(), "tokenizer_config.json": dump(config),
                "special_tokens_map.json": dump(special)}

    def __len__(self):
        return len(self.inv_vocab)

    def keep_only(self, used):
        """(a tokenizer of the pieces `used`, the special pieces and the lowest-scoring piece only,
        the old ids it keeps in order: old id keep[k] is new id k), for --trim-vocab.

        Every text that gave only `used` pieces splits as before: its best split is still there, and
        removing pieces cannot make another win. The lowest-scoring piece stays because it sets the
        unknown character's score (min - 10): a higher one could let <unk> beat a real split."""
        lowest = min(range(len(self.scores)), key=self.scores.__getitem__)
        specials = {self.vocab[t] for t in SPECIAL_TOKENS.values()}
        keep = sorted(set(used) | specials | {lowest})
        small = UnigramTokenizer([self.inv_vocab[i] for i in keep], [self.scores[i] for i in keep],
                                 keep.index(self.unk_token_id), self.charsmap)
        small.source_ids = keep
        return small, keep

    # ----- the slow path, from scratch --------------------------------------------------------

    def normalize(self, text):
        """Map characters through the table (a short grapheme wholly, see above); collapse spaces."""
        if self.precompiled is not None:
            text = self.precompiled.normalize_str(text)
        else:
            out, start = [], 0
            while start < len(text):
                end = start + 1  # the grapheme text[start:end]
                while end < len(text) and combines(text[end - 1], text[end]):
                    end += 1
                grapheme = text[start:end]
                if grapheme[0] in self.table and len(grapheme.encode("utf-8")) < 6:
                    out.append(self.table[grapheme[0]])  # marks after a mapped character are dropped
                else:
                    out.extend(self.table.get(c, c) for c in grapheme)
                start = end
            text = "".join(out)
        while "  " in text:  # runs of spaces -> one space
            text = text.replace("  ", " ")
        return text

    @staticmethod
    def pre_tokenize(text):
        """Spaces -> "▁"; a "▁" in front unless there is one; cut before every "▁"."""
        if not text:
            return []
        text = text.replace(" ", METASPACE)
        if not text.startswith(METASPACE):
            text = METASPACE + text
        return [METASPACE + part for part in text.split(METASPACE)[1:]]

    def viterbi(self, text):
        """The highest-scoring split of `text` into pieces.

        best[i] is the best score of any split of text[:i]; each piece text[i:j] in the vocabulary
        offers best[i] + score(piece) for best[j]. Scanning i left to right, every best[i] is final
        before it is used. A character that no single piece covers is <unk> at the unknown score.
        Walking back from the end along the chosen pieces gives the split."""
        n = len(text)
        best = [None] * (n + 1)  # (score, start of the last piece, piece id) for text[:i]
        best[0] = (0.0, 0, None)
        for i in range(n):
            score_here = best[i][0]
            has_single_char_piece = False
            for j in range(i + 1, min(n, i + self.max_piece_chars) + 1):
                piece_id = self.vocab.get(text[i:j])
                if piece_id is None:
                    continue
                has_single_char_piece |= j == i + 1
                candidate = score_here + self.scores[piece_id]
                if best[j] is None or candidate > best[j][0]:  # a tie keeps the first found
                    best[j] = (candidate, i, piece_id)
            if not has_single_char_piece:
                candidate = score_here + self.unk_score
                if best[i + 1] is None or candidate > best[i + 1][0]:
                    best[i + 1] = (candidate, i, self.unk_token_id)
        pieces, end = [], n
        while end > 0:
            _, start, piece_id = best[end]
            if piece_id == self.unk_token_id and pieces and pieces[-1][1] == self.unk_token_id:
                pieces[-1] = (text[start:end] + pieces[-1][0], piece_id)  # fuse neighbouring unknowns
            else:
                pieces.append((text[start:end], piece_id))
            end = start
        return [piece if piece_id != self.unk_token_id else SPECIAL_TOKENS["unk"]
                for piece, piece_id in reversed(pieces)]

    def tokenize(self, text):
        """Text -> pieces, in pure Python. No <s>/</s> are added. Special pieces written in the
        text ("<mask>") stay whole, as `tokenizers` keeps its added tokens."""
        pieces = []
        for part, is_special in _split_specials(text):
            if is_special:
                pieces.append(part)
                continue
            for word in self.pre_tokenize(self.normalize(part)):
                if word not in self._cache:
                    if len(self._cache) > 1 << 18:
                        self._cache.clear()
                    self._cache[word] = self.viterbi(word)
                pieces.extend(self._cache[word])
        return pieces

    def encode(self, text):
        """Text -> piece ids (from scratch)."""
        return self.convert_tokens_to_ids(self.tokenize(text))

    # ----- the fast path, through huggingface/tokenizers -------------------------------------

    @property
    def fast(self):
        """The equivalent `tokenizers.Tokenizer` (Rust), built once on first use."""
        if self._fast is None:
            fast = Tokenizer(models.Unigram(list(zip(self.inv_vocab, self.scores)), unk_id=self.unk_token_id,
                                            byte_fallback=False))
            fast.normalizer = normalizers.Sequence([normalizers.Precompiled(self.charsmap),
                                                    normalizers.Replace(Regex(" {2,}"), " ")])
            fast.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
            fast.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
            fast.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                     for t in SPECIAL_TOKENS.values()])
            self._fast = fast
        return self._fast

    def words_and_spans(self, text):
        """Words of a raw text, as CoNLL splits them (spaces, punctuation, CJK characters: the
        split BERT's basic tokenizer makes, without its lowercasing), and their character spans."""
        spans = split_words(text)
        return [text[a:b] for a, b in spans], spans

    def decode(self, ids):
        """Piece ids -> text: "▁" back to spaces, special pieces dropped."""
        specials = set(SPECIAL_TOKENS.values())
        text = "".join(p for p in self.convert_ids_to_tokens(ids) if p not in specials)
        return text.replace(METASPACE, " ").lstrip(" ")

    def steps(self, text):
        """What each step makes of `text`, as (step, result) pairs, the pieces last
        (`python -m minibert_ner.tools.tokenize --steps` prints them)."""
        normalized = self.normalize(text)
        words = self.pre_tokenize(normalized)
        return [("text", text), ("normalize", normalized), ("pre_tokenize", words),
                ("viterbi", [p for w in words for p in self.viterbi(w)])]


def load_tokenizer(folder, lowercase=False):
    """The tokenizer a model folder holds: WordPiece from vocab.txt (lowercasing when asked, or when
    its tokenizer_config.json says the vocabulary is uncased), else Unigram from tokenizer.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VocabError(f"{folder}: no such folder; expected a model folder (vocab.txt or tokenizer.json)")
    if (folder / "vocab.txt").is_file():
        return WordPieceTokenizer.from_file(folder / "vocab.txt", lowercase=lowercase or says_lowercase(folder))
    if lowercase:
        raise VocabError(f"{folder}: --lowercase is for WordPiece vocabularies (vocab.txt); this model's "
                         f"SentencePiece tokenizer.json does its own normalisation")
    if not (folder / "tokenizer.json").is_file():
        raise VocabError(f"{folder}: no vocab.txt (WordPiece) or tokenizer.json (SentencePiece Unigram)")
    return UnigramTokenizer.from_file(folder / "tokenizer.json")


def _split_specials(text):
    """[(part, is_special)]: the special pieces written in `text` cut out, the rest in between."""
    parts, start, i = [], 0, 0
    while i < len(text):
        found = next((t for t in SPECIAL_TOKENS.values() if text.startswith(t, i)), None)
        if found is None:
            i += 1
            continue
        if i > start:
            parts.append((text[start:i], False))
        parts.append((found, True))
        start = i = i + len(found)
    if start < len(text):
        parts.append((text[start:], False))
    return parts


def _find_charsmap(normalizer):
    """The base64 Precompiled charsmap inside a tokenizer.json normalizer (maybe in a Sequence)."""
    import base64
    if not normalizer:
        return None
    if normalizer.get("type") == "Precompiled":
        return base64.b64decode(normalizer["precompiled_charsmap"])
    for inner in normalizer.get("normalizers", []):
        found = _find_charsmap(inner)
        if found is not None:
            return found
    return None
