"""Reading and writing NER corpora: CoNLL-2002/2003 and WikiANN files, IOB1/IOB2 tag schemes, labels.

What it does: turns a labelled file into a list of `Sentence`s (words, tags, language, and where in
the file each came from), converts between the IOB1 scheme the paper trains on (Moon et al.,
Section 3: "We are using an IOB1 encoding") and the IOB2 scheme most corpora ship in, builds the
label list, reads raw text for the auxiliary cloze tasks, writes conlleval input, and knows where
the shared corpora live (their manifest and downloads: `python -m minibert_ner.tools.datasets`). Every file is
decoded on its own (`decode`: UTF-8 unless told otherwise, a byte-order mark dropped).

What it leaves out: word pieces, windows and batches (`windows.py`), chunk scoring (`scoring.py`),
IOBES/BILOU schemes, and any silent repair of the data: a malformed line is an error naming the
file and line, never a skipped line.
"""
from __future__ import annotations

import codecs
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from .files import written_aside

DOCSTART = "-DOCSTART-"
SCHEMES = ("IOB1", "IOB2")
# CoNLL file stems name their language with three letters; everything else uses ISO 639-1.
_LANG_BY_STEM = {"eng": "en", "deu": "de", "esp": "es", "ned": "nl"}
_TAG = re.compile(r"O|[BI]-\S+")  # "O", or B-/I- followed by a non-empty type
# A column is a run of anything but ASCII whitespace (space, tab, the \r of CRLF files, \v, \f):
# what CoNLL files separate columns with. Everything else belongs to a token, even what Python
# calls whitespace: NBSP (10\u00a0000), U+2028, U+3000, and control characters such as \x1f.
_COLUMN = re.compile(r"[^ \t\r\v\f]+")


# The bundled synthetic sample (data/sample/<lang>/{train,dev,test}.txt): the demo's data
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


def shared_data_dir() -> Path:
    """Where the real corpora live: $MINIBERT_SHARED_DATA, else ../shared/data beside the checkout.

    The one place that knows it (tests, tutorials, bench and experiments ask here); it may not exist."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("MINIBERT_SHARED_DATA", default))


# The CoNLL files in the shared data folder: lang -> (train, dev, test). German: the original deu.train
# is not public, so training reads the derived IOB2 copy (read as IOB1); its dev/test are the originals.
CONLL_FILES = {
    "en": ("conll2003/en/eng.train", "conll2003/en/eng.testa", "conll2003/en/eng.testb"),
    "de": ("conll2003/de/derived-flydzy/train.txt", "conll2003/de/deu.testa", "conll2003/de/deu.testb"),
    "es": ("conll2002/es/esp.train", "conll2002/es/esp.testa", "conll2002/es/esp.testb"),
    "nl": ("conll2002/nl/ned.train", "conll2002/nl/ned.testa", "conll2002/nl/ned.testb"),
}


def corpus_files():
    """Every CoNLL-2002/2003 and WikiANN file of the shared data (none when it is absent)."""
    root = shared_data_dir()
    return sorted(p for p in [*root.glob("conll200*/**/*"), *root.glob("wikiann/*/*.tsv")]
                  if p.is_file() and (p.suffix != ".txt" or p.parent.name == "derived-flydzy"))


def mbert_vocab_path() -> Path:
    """mBERT's cased vocab.txt inside the shared data (it may not exist)."""
    return shared_data_dir() / "mbert" / "bert-base-multilingual-cased" / "vocab.txt"


class DataError(ValueError):
    """A data file is not what it should be; the message reads `path:line: what was expected`."""


@dataclass
class Sentence:
    """One sentence: `tags` is empty for unlabelled text; `line` is the 1-based line of words[0]."""
    words: list[str]
    tags: list[str]
    lang: str
    source: str = ""
    line: int = 0


# ISO 639-1 two-letter language codes: the folder names infer_lang accepts as a language
ISO_639_1 = set("""aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig
ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml
mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg
si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh
yi yo za zh zu""".split())


def infer_lang(path: str | Path) -> str:
    """Language code from a file name (eng.train -> en, train-ru.tsv -> ru, .../de/x.txt -> de)."""
    path = Path(path)
    stem = path.name.split(".")[0]
    if stem in _LANG_BY_STEM:
        return _LANG_BY_STEM[stem]
    match = re.search(r"-([a-z]{2})\.tsv$", path.name)
    if match:
        return match.group(1)
    # A folder named like a language code, nearest first: conll2003/de/derived-flydzy/train.txt,
    # or like the manifest's dataset names: data/raw/conll2003-de/derived-train.txt.
    for parent in list(path.parents)[:3]:
        match = re.fullmatch(r"(?:.+-)?([a-z]{2})", parent.name)
        if match and match.group(1) in ISO_639_1:  # a folder "tmp/xy" is no language
            return match.group(1)
    raise DataError(f"{path}: cannot tell the language from the file name or its folders; give it as "
                    f"LANG={path} (or lang='xx')")


def read_file(path, encoding="utf-8", what="a CoNLL or WikiANN file") -> str:
    """The text of one file, decoded on its own (see `decode`); a missing file names what was expected."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}:0: no such file; expected {what}") from None
    except OSError as err:  # a folder, no permission, ...
        raise DataError(f"{path}:0: cannot read it ({err.strerror}); expected {what}") from None
    return decode(raw, path, encoding)


def decode(raw: bytes, source, encoding="utf-8") -> str:
    """Bytes -> text for one file (`source` names it in messages): a UTF-8 byte-order mark is dropped,
    undecodable bytes are an error naming file, line and option, and a non-UTF-8 `encoding` for bytes
    that are valid UTF-8 with non-ASCII text warns (Latin-1 would silently turn "für" into "fÃ¼r")."""
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        name = codecs.lookup(encoding).name
        text = raw.decode(encoding)
    except LookupError:
        raise DataError(f"{source}:0: unknown encoding {encoding!r}; use e.g. --encoding utf-8 "
                        f"or --encoding latin-1") from None
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1  # the line holding the first bad byte
        hint = ("if it is Latin-1, as the original CoNLL-2002 files are, pass --encoding latin-1 "
                "(encoding='latin-1' in Python)" if name == "utf-8" else "pass its real --encoding")
        raise DataError(f"{source}:{line}: byte 0x{raw[err.start]:02x} is not valid {encoding}; "
                        f"{hint}") from None
    if name != "utf-8" and not raw.isascii() and _is_utf8(raw):
        warnings.warn(f"{source}: read as {encoding}, but it is valid UTF-8 with non-ASCII text, "
                      f"which {encoding} garbles; drop --encoding {encoding} for it, or convert "
                      f"the {encoding} files: iconv -f {encoding} -t utf-8 FILE > FILE.utf8",
                      stacklevel=4)
    return text


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def split_columns(line: str) -> list[str]:
    """The columns of one CoNLL line, split at runs of ASCII whitespace only (see _COLUMN)."""
    return _COLUMN.findall(line)


def read_conll(path, lang=None, encoding="utf-8", scheme=None, untagged=False) -> list[Sentence]:
    """Read a CoNLL-2002/2003 or WikiANN file: token first, NER tag last, blank line between sentences.

    scheme=None keeps the tags as written; "IOB1" or "IOB2" converts every sentence. untagged=True
    also reads a file of one column, tokens only (text to tag): its sentences have tags == [].
    """
    path = Path(path)
    lang = lang or infer_lang(path)
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES} or None, got {scheme!r}")
    text = read_file(path, encoding, "a CoNLL or WikiANN file (`python -m minibert_ner.tools.datasets list` "
                                      "shows where to get one)")

    sentences, words, tags = [], [], []
    first_line, n_columns = 0, None

    def end_sentence():
        if words:
            sentences.append(Sentence(list(words), list(tags), lang, str(path), first_line))
            words.clear()
            tags.clear()

    # split("\n"), not splitlines(): the latter also breaks at \x1c, \x85 or \u2028, which can
    # be inside a token (see _COLUMN). A trailing "\r" is a separator: CRLF files need no special case.
    for number, line in enumerate(text.split("\n"), start=1):
        columns = split_columns(line)
        if not columns:  # "", "\r", " \r": a sentence boundary
            end_sentence()
            continue
        if columns[0] == DOCSTART:  # article marker: ends a sentence, is never a token
            end_sentence()
            continue
        # Every data line must have the column count of the file's first one: a different count
        # means a token with a space in it, a missing tag, or two files glued together.
        if n_columns is None:
            n_columns = len(columns)
            if n_columns < 2 and not untagged:
                raise DataError(f"{path}:{number}: 1 column; expected at least 2 (token ... tag)")
        if len(columns) != n_columns:
            raise DataError(f"{path}:{number}: {len(columns)} column(s), expected {n_columns} like "
                            f"the first data line (token ... tag)")
        if n_columns > 1 and not _TAG.fullmatch(columns[-1]):
            raise DataError(f"{path}:{number}: bad tag {columns[-1]!r}; expected O, B-TYPE or I-TYPE")
        if not words:
            first_line = number
        words.append(columns[0])
        if n_columns > 1:
            tags.append(columns[-1])
    end_sentence()
    if not sentences:
        raise DataError(f"{path}:1: no sentences; expected lines 'token ... tag' separated by blank lines")
    if scheme is not None:
        for sentence in sentences:
            sentence.tags = convert_scheme(sentence.tags, scheme)
    return sentences


# ----------------------------------------------------------------------------------------------
# Tag schemes. Both describe the same chunks; they differ in where "B-" is written:
#   IOB2: every entity starts with B-.           [B-PER I-PER B-PER] [O] [B-LOC]
#   IOB1: entities start with I-; B- only when an entity directly follows one of the same type.
#                                                [I-PER I-PER B-PER] [O] [I-LOC]
# The shared rule (conlleval's): a chunk starts at B-X, or at I-X whose previous tag is O or of
# another type. Applying it to ANY sequence makes both conversions keep the chunks unchanged, so an
# I-X after O in IOB2 data (one per Spanish file) is read as an entity start, as conlleval does.
# ----------------------------------------------------------------------------------------------
def _entity_type(tag: str) -> str:
    return "" if tag == "O" else tag[2:]


def starts_chunk(previous: str, tag: str) -> bool:
    """True when `tag` opens a new entity after `previous` (use "O" before the first word)."""
    if tag == "O":
        return False
    return tag.startswith("B-") or _entity_type(previous) != _entity_type(tag)


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """Write B- on every chunk start (IOB2); chunks are unchanged."""
    previous, out = "O", []
    for tag in tags:
        out.append("B-" + tag[2:] if starts_chunk(previous, tag) else tag)
        previous = tag
    return out


def iob2_to_iob1(tags: list[str]) -> list[str]:
    """Write I- on chunk starts, keeping B- only right after an entity of the same type (IOB1)."""
    previous, out = "O", []
    for tag in tags:
        # A B-X is needed only to split X from an X right before it; else I-X starts the chunk too.
        if tag.startswith("B-") and _entity_type(previous) != tag[2:]:
            tag = "I-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def convert_scheme(tags: list[str], scheme: str) -> list[str]:
    """Tags in `scheme` ("IOB1" or "IOB2"), whatever scheme they are in now."""
    if scheme == "IOB1":
        return iob2_to_iob1(tags)
    if scheme == "IOB2":
        return iob1_to_iob2(tags)
    raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")


def detect_scheme(sentences: list[Sentence]) -> str | None:
    """Return "IOB1" if entities mostly start with I-, "IOB2" if with B-, None if there are none."""
    starts = Counter()
    for sentence in sentences:
        for previous, tag in zip(["O"] + sentence.tags, sentence.tags):
            if starts_chunk(previous, tag):
                # A B- glued to an entity of the same type is written in both schemes: no evidence.
                if tag.startswith("I-"):
                    starts["IOB1"] += 1
                elif _entity_type(previous) != _entity_type(tag):
                    starts["IOB2"] += 1
    if not starts["IOB1"] and not starts["IOB2"]:
        return None
    return "IOB1" if starts["IOB1"] > starts["IOB2"] else "IOB2"


# ----------------------------------------------------------------------------------------------
# Labels, raw text, conlleval output
# ----------------------------------------------------------------------------------------------
def build_label_list(sentences: list[Sentence]) -> list[str]:
    """["O", then B-X and I-X for every entity type X seen, sorted]: the same list on every run.

    Both prefixes go in even if one is never seen: IOB1 training data may hold no B-MISC at all
    (B- is rare there) while the test set has one, and the classifier must be able to output it.
    """
    types = {_entity_type(tag) for sentence in sentences for tag in sentence.tags} - {""}
    return ["O"] + sorted(prefix + "-" + name for name in types for prefix in "BI")


def unknown_tags_to_o(sentences: list[Sentence], labels: list[str]) -> list[Sentence]:
    """Copies whose tags outside `labels` read "O": evaluation windows need a label id for every
    word; the scorer still sees the original tags, so such entities count as missed."""
    known = set(labels)
    return [replace(s, tags=[t if t in known else "O" for t in s.tags]) for s in sentences]


def check_labels(sentences: list[Sentence], labels: list[str], strict: bool = True) -> int:
    """Raise (strict) or warn for tags not in `labels`, naming file and line; return how many tokens
    carry one. A warning names each unknown tag once, with its count and first place."""
    known, first, count = set(labels), {}, {}
    for sentence in sentences:
        for offset, tag in enumerate(sentence.tags):
            if tag in known:
                continue
            where = f"{sentence.source}:{sentence.line + offset}"
            if strict:
                raise DataError(f"{where}: tag {tag!r} never seen in training; known labels: {' '.join(labels)}")
            first.setdefault(tag, where)
            count[tag] = count.get(tag, 0) + 1
    for tag, where in first.items():
        times = f" ({count[tag]} tokens)" if count[tag] > 1 else ""
        warnings.warn(f"{where}: tag {tag!r} never seen in training{times}; those entities count as missed; "
                      f"known labels: {' '.join(labels)}", stacklevel=2)
    return sum(count.values())


def read_text(path_or_lines, lang: str, encoding: str = "utf-8") -> list[Sentence]:
    """Unlabelled text, one sentence per line, split at any whitespace (punctuation is the tokenizer's job)."""
    if isinstance(path_or_lines, (str, Path)):
        source = str(path_or_lines)
        lines = read_file(path_or_lines, encoding, "raw text, one sentence per line").split("\n")
    else:
        source, lines = "", list(path_or_lines)
    return [Sentence(line.split(), [], lang, source, number)
            for number, line in enumerate(lines, start=1) if line.split()]


def write_conll(path, sentences: list[Sentence], predictions=None) -> None:
    """Write `token gold [pred]` lines, a blank line after each sentence: the input conlleval reads.
    Written aside and renamed: a full disk or a kill leaves an existing file as it was."""
    with written_aside(path) as tmp:
        _write_conll_lines(tmp, sentences, predictions)


def _write_conll_lines(path, sentences, predictions):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for index, sentence in enumerate(sentences):
            columns = [sentence.words] + ([sentence.tags] if sentence.tags else [])
            if predictions is not None:
                columns.append(predictions[index])
            if any(len(column) != len(sentence.words) for column in columns):
                raise DataError(f"{sentence.source}:{sentence.line}: tags/predictions and words "
                                f"differ in length ({[len(c) for c in columns]})")
            for row in zip(*columns):
                out.write(" ".join(row) + "\n")
            out.write("\n")
