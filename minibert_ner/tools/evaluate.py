"""`python -m minibert_ner.tools.evaluate [-l] [-r] [-d DELIM] [-o OTAG] FILE...`: a drop-in for `conlleval`.

What it does: reads conlleval's input format (one token per line, columns separated by spaces,
the last two being the GOLD tag and the PREDICTED tag, a blank line between sentences), scores
it with `minibert_ner.scoring` and prints conlleval's report, digit for digit, or with -l its
LaTeX table. Several files are read as one stream, as `cat FILES | conlleval` reads them.

Where it differs from conlleval (version 2004-01-26), on input conlleval mishandles: columns split
at any run of ASCII whitespace unless -d is given (conlleval: single spaces), so tab-separated and
CRLF files work; tags must be IOB1/IOB2 ("O", "B-X", "I-X"), checked strictly with file:line errors
where conlleval would invent its own kinds of chunks; -o also works without -r (conlleval reads it
only with -r); a file's end ends its last line (cat would glue it to the next file's first line).
"""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from minibert_ner.data import DataError, decode, read_file, split_columns
from minibert_ner.scoring import Scores, compute_percentages, format_report, score, split_tag

# conlleval's sentence-boundary marker: a line whose FIRST column is "-X-" ends a sentence like
# a blank line does. ("-DOCSTART- -X- O O" does not qualify: its first column is -DOCSTART-.)
BOUNDARY = "-X-"
DOCSTART = "-DOCSTART-"

HELP = """\
Score predicted NER tags against gold tags and print conlleval's report.

Input format (what conlleval reads; write it with one line per token):
  word  [more columns...]  GOLD_TAG  PREDICTED_TAG
  (blank line between sentences)

  For example, a file holding

    U.N.      I-ORG  I-ORG
    official  O      O
    Ekeus     I-PER  I-PER
    heads     O      O
    for       O      O
    Baghdad   I-LOC  O

  prints

    processed 6 tokens with 3 phrases; found: 2 phrases; correct: 2.
    accuracy:  83.33%; precision: 100.00%; recall:  66.67%; FB1:  80.00
                  LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0
                  ORG: precision: 100.00%; recall: 100.00%; FB1: 100.00  1
                  PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1

How to read the report:
  phrases   entity chunks: a maximal run of tokens of one type, started by B-X, or by I-X
            after O or after another type. IOB1 and IOB2 give the same chunks.
  correct   predicted chunks whose type, first and last token all equal a gold chunk's.
  accuracy  share of tokens whose two tags are identical strings (I-PER vs B-PER counts
            as wrong even when the chunk is right); dominated by O, so hardly informative.
  FB1       F1 = 2PR/(P+R), the number papers report. The last number on a type line is
            how many chunks of that type were PREDICTED.

-DOCSTART- lines are tokens to conlleval (tags O O, so always "correct": they add to the token
count and to accuracy, never to chunks). The default does the same, to reproduce conlleval's
numbers; --skip-docstart drops them, to match token counts of readers that skip them.

Several FILEs are one stream, as with `cat FILES | conlleval`: the first line fixes the column
count for all, and a file that does not end with a blank line runs into the next one's first
sentence. A file's end does end its last line, newline or not.
"""


class EvaluateError(ValueError):
    """Bad input; the message starts with FILE:LINE."""


@dataclass
class Format:
    """How to read the columns and tags: conlleval's -d, -o and -r, and --skip-docstart."""
    delimiter: re.Pattern | None = None  # None: runs of ASCII whitespace (data.split_columns)
    outside: str = "O"  # the tag that means "no entity"
    raw: bool = False  # tags carry no B-/I- prefix: every tagged token is a chunk of its own
    skip_docstart: bool = False


def split_fields(line: str, form: Format) -> list[str]:
    """The columns of one line. With a delimiter, as Perl's split(/DELIM/, line) in conlleval:
    empty fields are kept, except at the end of the line, so a blank line has none."""
    if form.delimiter is None:
        return split_columns(line)
    fields = form.delimiter.split(line)
    while fields and fields[-1] == "":
        fields.pop()
    return fields


def to_iob(tag: str, form: Format) -> str:
    """A tag as the scorer reads it: the outside tag becomes "O"; a raw tag X becomes "B-X"."""
    if tag == form.outside or (form.raw and tag == "O"):  # conlleval -r: both mean outside
        return "O"
    return "B-" + tag if form.raw else tag


def read_tag_columns(
    lines: Iterable[tuple[str, str]], form: Format | None = None
) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag lists per sentence from ("FILE:LINE", text) pairs in conlleval's format.

    The end of the pairs closes the open sentence.
    """
    form = form or Format()
    gold: list[list[str]] = [[]]
    pred: list[list[str]] = [[]]
    n_columns = None  # fixed by the first non-blank line, as conlleval does
    for where, line in lines:
        columns = split_fields(line, form)
        # A blank (or whitespace-only, e.g. a lone "\r") line ends the sentence.
        if not columns or (form.skip_docstart and columns[0] == DOCSTART):
            gold.append([])
            pred.append([])
            continue
        if len(columns) < 2:
            raise EvaluateError(
                f"{where}: expected at least 2 columns (gold tag, predicted tag), got {len(columns)}: {line!r}"
            )
        if n_columns is None:
            n_columns = len(columns)
        elif len(columns) != n_columns:
            raise EvaluateError(
                f"{where}: expected {n_columns} columns like the first line, got {len(columns)}: {line!r}"
            )
        if columns[0] == BOUNDARY:
            gold.append([])
            pred.append([])
            continue
        gold_tag, pred_tag = to_iob(columns[-2], form), to_iob(columns[-1], form)
        for kind, tag in (("gold", gold_tag), ("predicted", pred_tag)):
            try:
                split_tag(tag)
            except ValueError as error:
                hint = "" if form.raw else "; pass -r for tags without B-/I-, -o for another outside tag"
                raise EvaluateError(f"{where}: {kind} tag: {error}{hint}") from None
        gold[-1].append(gold_tag)
        pred[-1].append(pred_tag)
    # Drop the empty sentences that runs of blank lines leave behind.
    kept = [i for i, tags in enumerate(gold) if tags]
    return [gold[i] for i in kept], [pred[i] for i in kept]


def numbered_lines(files: list[str], encoding: str) -> Iterator[tuple[str, str]]:
    """("FILE:LINE", text) for every line of every file in turn, '-' being standard input."""
    for path in files:
        if path == "-":
            path, text = "<stdin>", decode(sys.stdin.buffer.read(), "<stdin>", encoding)
        else:
            text = read_file(path, encoding, "a file in conlleval's format (see --help)")
        lines = text.split("\n")
        if lines[-1] == "":  # the newline at the file's end ends a line; it does not start one
            lines.pop()
        for number, line in enumerate(lines, start=1):
            yield f"{path}:{number}", line.removesuffix("\r")  # a CRLF line end is a line end


def format_latex(scores: Scores) -> str:
    """conlleval -l: the LaTeX table rows, precision / recall / F1 per type, then overall."""
    out = r"        & Precision &  Recall  & F$_{\beta=1} \\\hline"
    for entity_type, s in sorted(scores.per_type.items()):
        out += "\n" + r"%-7s &  %6.2f\%% & %6.2f\%% & %6.2f \\" % (
            entity_type, *compute_percentages(s.n_correct, s.n_pred, s.n_gold))
    out += "\\hline\n"
    return out + r"Overall &  %6.2f\%% & %6.2f\%% & %6.2f \\\hline" % compute_percentages(
        scores.n_correct, scores.n_pred, scores.n_gold) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input or option)."""
    parser = argparse.ArgumentParser(
        prog="python -m minibert_ner.tools.evaluate",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE",
        help="conlleval-format file(s); '-' reads standard input. Several files are one stream, "
        "like `cat FILES | conlleval` (see above).",
    )
    parser.add_argument("-l", "--latex", action="store_true",
                        help="print conlleval's LaTeX table rows instead of the report")
    parser.add_argument("-r", "--raw", action="store_true",
                        help="tags have no B-/I- prefix (PER, LOC, O): each tagged token is a chunk")
    parser.add_argument("-d", "--delimiter", metavar="DELIM",
                        help="column separator, a regular expression as in conlleval, e.g. -d '\\t' "
                        "(default: any run of spaces and tabs)")
    parser.add_argument("-o", "--outside", metavar="OTAG", default="O",
                        help="the tag that means no entity (default O)")
    parser.add_argument("--encoding", default="utf-8",
                        help="of every FILE (default utf-8; latin-1 for the original CoNLL-2002 files)")
    parser.add_argument(
        "--skip-docstart", action="store_true",
        help="drop -DOCSTART- lines instead of counting them as tokens as conlleval does",
    )
    args = parser.parse_args(argv)

    problem = None
    with warnings.catch_warnings(record=True) as caught:  # printed as one line each, below
        warnings.simplefilter("always")
        try:
            delimiter = re.compile(args.delimiter) if args.delimiter is not None else None
            form = Format(delimiter, args.outside, args.raw, args.skip_docstart)
            gold, pred = read_tag_columns(numbered_lines(args.files, args.encoding), form)
        except re.error as error:
            problem = f"-d {args.delimiter!r} is not a regular expression ({error}); e.g. -d '\\t'"
        except (EvaluateError, DataError) as error:
            problem = str(error)
    for warning in caught:
        print(f"evaluate: warning: {warning.message}", file=sys.stderr)
    if problem:
        print(f"evaluate: error: {problem}", file=sys.stderr)
        return 2
    scores = score(gold, pred)
    sys.stdout.write(format_latex(scores) if args.latex else format_report(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
