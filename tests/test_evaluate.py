"""`python -m minibert_ner.tools.evaluate` as conlleval: -l, -r, -d, -o, several files as one stream,
--encoding, and bad input as one line naming file and line (exit 2, no traceback).

The expected texts below are conlleval.pl's own output (version 2004-01-26). To check every case
against the Perl original, set CONLLEVAL=/path/to/conlleval.pl (perl must be installed).
"""
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minibert_ner.tools import evaluate

REPO = Path(__file__).resolve().parents[1]
CONLLEVAL = os.environ.get("CONLLEVAL")

REUTERS = ("-DOCSTART- -X- O O\n\nU.N. NNP I-ORG I-ORG\nofficial NN O O\nEkeus NNP I-PER I-PER\n"
           "heads VBZ O O\n\nfor IN O O\nBaghdad NNP I-LOC O\n")
RAW = ("Peter PER PER\nBlackburn PER PER\nlives O O\nin NONE O\nLancaster LOC ORG\n. O LOC\n\n"
       "EU ORG ORG\n")

# (name, contents of each file, options, conlleval's output for `cat FILES | conlleval OPTIONS`)
CASES = [
    ("latex", [REUTERS], ["-l"],
     "        & Precision &  Recall  & F$_{\\beta=1} \\\\\\hline\n"
     "LOC     &    0.00\\% &   0.00\\% &   0.00 \\\\\n"
     "ORG     &  100.00\\% & 100.00\\% & 100.00 \\\\\n"
     "PER     &  100.00\\% & 100.00\\% & 100.00 \\\\\\hline\n"
     "Overall &  100.00\\% &  66.67\\% &  80.00 \\\\\\hline\n"),
    # -r: tags without B-/I-: every tagged token is a chunk; O is outside, NONE is a type here...
    ("raw", [RAW], ["-r"],
     "processed 7 tokens with 5 phrases; found: 5 phrases; correct: 3.\n"
     "accuracy:  57.14%; precision:  60.00%; recall:  60.00%; FB1:  60.00\n"
     "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
     "             NONE: precision:   0.00%; recall:   0.00%; FB1:   0.00  0\n"
     "              ORG: precision:  50.00%; recall: 100.00%; FB1:  66.67  2\n"
     "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  2\n"),
    # ... unless -o says it is the outside tag
    ("raw outside", [RAW], ["-r", "-o", "NONE"],
     "processed 7 tokens with 4 phrases; found: 5 phrases; correct: 3.\n"
     "accuracy:  71.43%; precision:  60.00%; recall:  75.00%; FB1:  66.67\n"
     "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
     "              ORG: precision:  50.00%; recall: 100.00%; FB1:  66.67  2\n"
     "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  2\n"),
    ("raw latex", [RAW], ["-r", "-l"],
     "        & Precision &  Recall  & F$_{\\beta=1} \\\\\\hline\n"
     "LOC     &    0.00\\% &   0.00\\% &   0.00 \\\\\n"
     "NONE    &    0.00\\% &   0.00\\% &   0.00 \\\\\n"
     "ORG     &   50.00\\% & 100.00\\% &  66.67 \\\\\n"
     "PER     &  100.00\\% & 100.00\\% & 100.00 \\\\\\hline\n"
     "Overall &   60.00\\% &  60.00\\% &  60.00 \\\\\\hline\n"),
    # -d: a regular expression; here a tab, so a token may hold a space
    ("tab delimiter", ["New York\tI-LOC\tI-LOC\nis\tO\tO\nbig\tO\tI-MISC\n"], ["-d", "\\t"],
     "processed 3 tokens with 1 phrases; found: 2 phrases; correct: 1.\n"
     "accuracy:  66.67%; precision:  50.00%; recall: 100.00%; FB1:  66.67\n"
     "              LOC: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
     "             MISC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"),
    # several files are one stream: without a blank line at its end, a file's last sentence
    # (here the chunk x) runs on into the next file (y): one chunk, as cat | conlleval sees it
    ("two files, one stream", ["x I-PER I-PER\n", "y I-PER I-PER\nz O O\n"], [],
     "processed 3 tokens with 1 phrases; found: 1 phrases; correct: 1.\n"
     "accuracy: 100.00%; precision: 100.00%; recall: 100.00%; FB1: 100.00\n"
     "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"),
    ("two files, chunk across", ["x O I-PER\n", "y I-PER I-PER\n"], [],
     "processed 2 tokens with 1 phrases; found: 1 phrases; correct: 0.\n"
     "accuracy:  50.00%; precision:   0.00%; recall:   0.00%; FB1:   0.00\n"
     "              PER: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"),
    ("empty", [""], [], "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"),
    ("empty latex", [""], ["-l"],
     "        & Precision &  Recall  & F$_{\\beta=1} \\\\\\hline\\hline\n"
     "Overall &    0.00\\% &   0.00\\% &   0.00 \\\\\\hline\n"),
]


def run_ours(tmp_path, contents, options, capsys):
    paths = []
    for i, text in enumerate(contents):
        paths.append(tmp_path / f"in{i}.txt")
        paths[-1].write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    assert evaluate.main([*options, *map(str, paths)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("name, contents, options, expected", CASES, ids=[c[0] for c in CASES])
def test_options_print_what_conlleval_prints(tmp_path, capsys, name, contents, options, expected):
    assert run_ours(tmp_path, contents, options, capsys) == expected


def random_corpus(seed, delimiter=" ", raw=False):
    """Random sentences of `word [pos] gold pred` with -X- lines, DOCSTART and hyphenated types."""
    rng = random.Random(seed)
    types = ["PER", "LOC", "ORG-X", "MISC"]
    tags = ["O"] * 4 + (types if raw else [p + "-" + t for t in types for p in "BI"])
    lines = ["-DOCSTART-" + delimiter + "O" + delimiter + "O", ""]
    for _ in range(60):
        for _ in range(rng.randint(1, 9)):
            lines.append(delimiter.join([rng.choice(["ab", "c", "Köln"]), rng.choice(tags), rng.choice(tags)]))
        lines.append(rng.choice(["", "", "-X-" + delimiter + "O" + delimiter + "O"]))
    return "\n".join(lines) + "\n"


PARITY = [(name, contents, options) for name, contents, options, _ in CASES] + [
    (f"random {seed} {options}", [random_corpus(seed, *extra)], options)
    for seed, options, extra in [(1, [], ()), (2, ["-l"], ()), (3, ["-r"], (" ", True)),
                                 (4, ["-r", "-o", "c"], (" ", True)), (5, ["-d", "\\t"], ("\t",)),
                                 (6, ["-d", ",", "-l"], (",",)), (7, ["-o", "I-PER"], ())]]


@pytest.mark.skipif(not CONLLEVAL or not shutil.which("perl"), reason="set CONLLEVAL=path/to/conlleval.pl")
@pytest.mark.parametrize("name, contents, options", PARITY, ids=[p[0] for p in PARITY])
def test_byte_identical_to_conlleval_pl(tmp_path, capsys, name, contents, options):
    if "-o" in options and "-r" not in options:
        pytest.skip("conlleval reads -o only with -r (see evaluate.py)")
    theirs = subprocess.run(["perl", CONLLEVAL, *options], input="".join(contents).encode("utf-8"),
                            capture_output=True, check=True).stdout.decode("utf-8")
    assert run_ours(tmp_path, contents, options, capsys) == theirs


def test_outside_tag_without_raw_and_byte_order_mark(tmp_path, capsys):
    # -o works on prefixed tags too (conlleval only reads it with -r); a BOM is no part of a tag.
    text = "\ufeffNONE I-PER\nNONE NONE\n".encode("utf-8")
    assert run_ours(tmp_path, [text], ["-o", "NONE"], capsys).startswith(
        "processed 2 tokens with 0 phrases; found: 1 phrases; correct: 0.")


def test_encoding_option(tmp_path, capsys):
    latin = "Köln I-LOC I-LOC\n".encode("latin-1")
    assert run_ours(tmp_path, [latin], ["--encoding", "latin-1"], capsys).startswith("processed 1 tokens")
    utf8 = tmp_path / "utf8.txt"
    utf8.write_text("Köln I-LOC I-LOC\n", encoding="utf-8")
    assert evaluate.main(["--encoding", "latin-1", str(utf8)]) == 0
    assert capsys.readouterr().err.startswith(f"evaluate: warning: {utf8}: read as latin-1, but it is valid UTF-8")


@pytest.mark.parametrize("files, options, message", [
    ([b"K\xf6ln I-LOC I-LOC\n"], [], r"{0}:1: byte 0xf6 is not valid utf-8; .*--encoding latin-1"),
    ([b"a O O\n", b"b x O O\n"], [], r"{1}:1: expected 3 columns like the first line, got 4"),
    ([b"a PER O\n"], [], r"{0}:1: gold tag: invalid tag 'PER'.*; pass -r for tags without B-/I-"),
    ([b"a O O\n"], ["-d", "(\\t"], r"-d '\(\\\\t' is not a regular expression"),
    ([b"a O O\n"], ["--encoding", "klingon"], r"{0}:0: unknown encoding 'klingon'"),
    ([None], [], r"{0}:0: no such file"),
    (["folder"], [], r"{0}:0: cannot read it \(Is a directory\)"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, files, options, message):
    paths = []
    for i, content in enumerate(files):
        paths.append(tmp_path / f"f{i}.txt")
        if content == "folder":
            paths[-1].mkdir()
        elif content is not None:
            paths[-1].write_bytes(content)
    run = subprocess.run([sys.executable, "-m", "minibert_ner.tools.evaluate", *options, *map(str, paths)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stdout == "", run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert re.match("evaluate: error: " + message.format(*map(re.escape, map(str, paths))), run.stderr), run.stderr
