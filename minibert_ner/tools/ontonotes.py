"""OntoNotes 5.0 in the CoNLL-2012 format, read into IOB1 sentences (Table 2 of Moon et al.).

What it does: reads the `*_conll` files of the CoNLL-2012 shared task (Pradhan et al. 2013), the
form OntoNotes 5.0 takes once the task's skeleton files are filled in with the LDC text, and turns
their bracketed named-entity column into IOB1 tags over the 18 OntoNotes types. `convert` writes
the two-column `word tag` files every other module reads (train, predict, evaluate):

    python -m minibert_ner.tools.ontonotes --from conll2012 conll-2012/v4/data/train/data/english --out en.train.txt

The format: one token per line, columns split at whitespace (0-based index):
    0 document id  1 part  2 word number  3 WORD  4 POS  5 parse bit  6 predicate lemma
    7 frameset id  8 word sense  9 speaker  10 NAMED ENTITIES  11.. one column per predicate
    last: coreference
A blank line ends a sentence; each part of a document sits between `#begin document (ID); part
NNN` and `#end document`. The named-entity column brackets spans, one type per span:
    (PERSON*   an entity opens on this word       *)   the open entity closes on this word
    *          inside the open entity, or outside  (GPE)  a one-word entity (also `(GPE*)`)
OntoNotes names are flat, so a span that opens inside another, closes twice, or stays open at
the end of its sentence is an error naming file and line, never repaired.

Arabic: the CoNLL-2012 script (skeleton2conll.py) writes each Arabic word as four fields joined
by "#": the treebank token (Arabic script, vocalized, clitics split off and marked with "-", e.g.
`وَ-`), then the lemma, the unvocalized and the vocalized form from OntoNotes' .lemma files.
We keep the first field, the token as the treebank writes it. Each short-vowel mark breaks a
word piece (mBERT: الحُكُومَةُ is 9 pieces, الحكومة one), the likely reason for the paper's
Arabic fertility of 7.42 where plain Arabic script gives ~2 (WikiANN). `arabic="plain"` also
drops the short-vowel marks (U+064B-U+0652) and the clitic hyphens, for comparison.

What it leaves out: the other layers (parse, senses, predicates, coreference), document ids in
the output, and choosing files: `find_conll_files` takes every `*gold_conll` file under a folder
except the `pt` genre (the Bible, which has no name annotation; Pradhan et al. 2013 leave it
out of NER too). The official NER splits are the CoNLL-2012 train/development/test folders.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..cli import run_command
from ..data import DataError, Sentence, infer_lang, iob2_to_iob1, starts_chunk, write_conll

# The 18 OntoNotes 5.0 entity types, the same in English, Chinese and Arabic.
TYPES = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
         "LANGUAGE", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL")
WORD, NAMES = 3, 10             # the word and named-entity columns (0-based)
MIN_COLUMNS = 12                # up to the named entities, plus the coreference column
# One cell of the named-entity column: an optional "(TYPE", an optional "*", an optional ")".
_CELL = re.compile(r"(?:\((?P<open>[^()*\s]+))?(?P<star>\*?)(?P<close>\)?)")
LANGUAGES = {"en": "english", "zh": "chinese", "ar": "arabic"}  # code -> folder: data/english/annotations/...
SPLITS = ("train", "development", "test")
_ARABIC_MARKS = re.compile("[\u064b-\u0652]")  # tanwin, fatha, damma, kasra, shadda, sukun


def infer_language(path) -> str:
    """en/zh/ar from the CoNLL-2012 folder layout (data/english/...), else from the name as data does."""
    for part in Path(path).parts:
        for code, folder in LANGUAGES.items():
            if part == folder:
                return code
    return infer_lang(path)


def arabic_token(word: str, arabic: str = "vocalized") -> str:
    """The treebank token out of skeleton2conll's `token#lemma#unvocalized#vocalized`;
    arabic="plain" also drops short-vowel marks and clitic hyphens (`وَ-` -> `و`)."""
    fields = word.split("#")
    if len(fields) >= 4:  # the last three are the ones skeleton2conll appended
        word = "#".join(fields[:-3])
    if arabic == "plain":
        word = _ARABIC_MARKS.sub("", word) or word  # a token of marks only stays as it is
        if len(word) > 1 and not (word.startswith("-") and word.endswith("-")):  # -LRB- stays
            word = word.removeprefix("-").removesuffix("-")
    return word


def read_conll2012(path, lang=None, arabic="vocalized") -> list[Sentence]:
    """Every sentence of one CoNLL-2012 `*_conll` file, tagged IOB1 over the 18 OntoNotes types."""
    path = Path(path)
    lang = lang or infer_language(path)
    if arabic not in ("vocalized", "plain"):
        raise ValueError(f"arabic must be 'vocalized' or 'plain', got {arabic!r}")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}:0: no such file; expected a CoNLL-2012 *_conll file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}:0: not UTF-8; CoNLL-2012 files are UTF-8") from None

    sentences, words, tags = [], [], []
    first_line = 0        # line of the sentence's first word
    document = None       # "#begin document" line number while inside a document
    open_type = None      # (type, line) of the entity open at this word, if any

    def end_sentence(number):
        if open_type:
            raise DataError(f"{path}:{open_type[1]}: entity ({open_type[0]}* is never closed "
                            f"(its sentence ends at line {number}); close it with *)")
        if words:
            sentences.append(Sentence(list(words), iob2_to_iob1(tags), lang, str(path), first_line))
            words.clear()
            tags.clear()

    for number, line in enumerate(lines, start=1):
        columns = line.split()
        if not columns:
            end_sentence(number)
            continue
        if line.startswith("#begin document"):
            if document:
                raise DataError(f"{path}:{number}: #begin document inside the document begun at "
                                f"line {document}; add its #end document line first")
            document = number
            continue
        if line.startswith("#end document"):
            if not document:
                raise DataError(f"{path}:{number}: #end document without a #begin document before it")
            end_sentence(number)
            document = None
            continue
        if not document:
            raise DataError(f"{path}:{number}: a token line outside any document; CoNLL-2012 files "
                            f"enclose each part in #begin document ... #end document")
        if len(columns) < MIN_COLUMNS:
            raise DataError(f"{path}:{number}: {len(columns)} columns; expected at least {MIN_COLUMNS} "
                            f"(CoNLL-2012: word in the 4th, named entities in the 11th)")
        word, cell = columns[WORD], columns[NAMES]
        if word == "[WORD]":
            raise DataError(f"{path}:{number}: a skeleton file (words are [WORD] placeholders); fill "
                            f"it in with the CoNLL-2012 skeleton2conll.sh and OntoNotes 5.0 (LDC2013T19)")
        match = _CELL.fullmatch(cell)
        if not match or not (match["star"] or (match["open"] and match["close"])):
            raise DataError(f"{path}:{number}: named-entity cell {cell!r}; expected *, (TYPE*, *) or (TYPE)")
        if match["open"]:
            if open_type:
                raise DataError(f"{path}:{number}: ({match['open']} opens inside ({open_type[0]}* of "
                                f"line {open_type[1]}; OntoNotes names do not nest")
            if match["open"] not in TYPES:
                raise DataError(f"{path}:{number}: unknown entity type {match['open']!r}; "
                                f"OntoNotes has {', '.join(TYPES)}")
            open_type = (match["open"], number)
            tags.append("B-" + match["open"])  # IOB2 first: B- on every entity's first word
        else:
            tags.append("I-" + open_type[0] if open_type else "O")
        if match["close"]:
            if not open_type:
                raise DataError(f"{path}:{number}: *) closes an entity that was never opened "
                                f"(or is closed twice)")
            open_type = None
        first_line = first_line if words else number
        words.append(arabic_token(word, arabic) if lang == "ar" else word)
    if document:
        raise DataError(f"{path}:{document}: #begin document without #end document before the file ends")
    end_sentence(len(lines) + 1)
    if not sentences:
        raise DataError(f"{path}:1: no sentences; expected a CoNLL-2012 *_conll file")
    return sentences


def find_conll_files(path) -> list[Path]:
    """A file as it is; a folder: its `*gold_conll` files, sorted, without the `pt` genre."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.rglob("*gold_conll") if "pt" not in p.relative_to(path).parts[:-1])
    if not found:
        raise DataError(f"{path}:0: no *gold_conll files under this folder; point at "
                        f"conll-2012/v4/data/<split>/data/<language> after skeleton2conll.sh")
    return found


def conll2012_folder(root, lang, split) -> Path:
    """Where the CoNLL-2012 tree keeps a language's split (0 train, 1 development, 2 test):
    root/<split>/data/<language>, root being conll-2012/v4/data."""
    return Path(root) / SPLITS[split] / "data" / LANGUAGES[lang]


def missing_folders(root, langs) -> list[Path]:
    """The CoNLL-2012 folders (every split of `langs`) that are not under root."""
    folders = [conll2012_folder(root, lang, split) for split in range(3) for lang in langs]
    return [folder for folder in folders if not folder.is_dir()]


HOW_TO_GET = ("OntoNotes 5.0 is licensed (LDC2013T19) and not shipped here: get it from the LDC, build the "
              "*_gold_conll files with the CoNLL-2012 scripts (skeleton2conll.sh over the train, development "
              "and test-key skeletons), and pass their conll-2012/v4/data folder")


def convert(files, out_path, lang=None, arabic="vocalized") -> list[Sentence]:
    """Read CoNLL-2012 files (or folders of them) and write one `word tag` IOB1 file; returns the sentences."""
    sentences = [s for f in files for p in find_conll_files(f) for s in read_conll2012(p, lang, arabic)]
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    write_conll(out_path, sentences)
    return sentences


def add_convert_arguments(p):
    """The options of `python -m minibert_ner.tools.datasets convert` (and of this module's own command line)."""
    p.add_argument("--from", dest="source", required=True, choices=["conll2012"], help="input format")
    p.add_argument("files", nargs="+", metavar="FILE", help="*_conll files, or folders: their *gold_conll "
                   "files (the pt genre left out)")
    p.add_argument("--out", required=True, help="the two-column IOB1 file to write")
    p.add_argument("--lang", help="language code for every file (default: from the folders, e.g. data/arabic)")
    p.add_argument("--arabic", choices=("vocalized", "plain"), default="vocalized", help="Arabic words as the "
                   "treebank writes them (default), or without short-vowel marks and clitic hyphens")


def convert_command(a) -> int:
    """Run `convert` with parsed options; 2 and one line for a malformed file."""
    return run_command(lambda: _convert(a))


def _convert(a) -> int:
    sentences = convert(a.files, a.out, a.lang, a.arabic)
    entities = sum(starts_chunk(previous, tag) for s in sentences for previous, tag in zip(["O"] + s.tags, s.tags))
    print(f"{a.out}: {len(sentences)} sentences, {sum(len(s.words) for s in sentences)} tokens, "
          f"{entities} entities", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """`--from conll2012 FILE... --out OUT`, the same as `python -m minibert_ner.tools.datasets convert`."""
    p = argparse.ArgumentParser(prog="python -m minibert_ner.tools.ontonotes", description=__doc__.split("\n\n")[0])
    add_convert_arguments(p)
    return convert_command(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
