"""`python -m minibert_ner.evaluate FILE...`: a drop-in for the CoNLL `conlleval` script.

What it does: reads conlleval's input format (one token per line, whitespace-separated columns,
the last two being the GOLD tag and the PREDICTED tag, a blank line between sentences), scores
it with `minibert_ner.scoring` and prints conlleval's report, digit for digit.

What it leaves out: conlleval's options (-l LaTeX, -r raw tags, -d delimiter, -o outside tag);
columns are split on any whitespace (conlleval splits on single spaces), so tab-separated files
work too. Tags must be IOB1/IOB2 ("O", "B-X", "I-X"), checked strictly with file:line errors.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from minibert_ner.scoring import format_report, score, split_tag

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
"""


class EvaluateError(ValueError):
    """Bad input; the message starts with FILE:LINE."""


def read_tag_columns(
    lines: Iterable[str], source: str, skip_docstart: bool = False
) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag lists per sentence from conlleval-format lines.

    `source` names the file in error messages. A file end closes the open sentence.
    """
    gold: list[list[str]] = [[]]
    pred: list[list[str]] = [[]]
    n_columns = None  # fixed by the first non-blank line, as conlleval does
    for line_number, line in enumerate(lines, start=1):
        columns = line.split()
        where = f"{source}:{line_number}"
        # A blank (or whitespace-only, e.g. a lone "\r") line ends the sentence.
        if not columns:
            gold.append([])
            pred.append([])
            continue
        if skip_docstart and columns[0] == DOCSTART:
            gold.append([])
            pred.append([])
            continue
        if len(columns) < 2:
            raise EvaluateError(
                f"{where}: expected at least 2 columns (gold tag, predicted tag), got {len(columns)}: {line.rstrip()!r}"
            )
        if n_columns is None:
            n_columns = len(columns)
        elif len(columns) != n_columns:
            raise EvaluateError(
                f"{where}: expected {n_columns} columns like the first line, got {len(columns)}: {line.rstrip()!r}"
            )
        if columns[0] == BOUNDARY:
            gold.append([])
            pred.append([])
            continue
        gold_tag, pred_tag = columns[-2], columns[-1]
        for kind, tag in (("gold", gold_tag), ("predicted", pred_tag)):
            try:
                split_tag(tag)
            except ValueError as error:
                raise EvaluateError(f"{where}: {kind} tag: {error}") from None
        gold[-1].append(gold_tag)
        pred[-1].append(pred_tag)
    # Drop the empty sentences that runs of blank lines leave behind.
    kept = [i for i, tags in enumerate(gold) if tags]
    return [gold[i] for i in kept], [pred[i] for i in kept]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m minibert_ner.evaluate",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE",
        help="conlleval-format file(s), UTF-8; '-' reads standard input. Several files are "
        "scored together, as one corpus (like `cat FILES | conlleval`).",
    )
    parser.add_argument(
        "--skip-docstart", action="store_true",
        help="drop -DOCSTART- lines instead of counting them as tokens as conlleval does",
    )
    args = parser.parse_args(argv)

    gold: list[list[str]] = []
    pred: list[list[str]] = []
    try:
        for path in args.files:
            if path == "-":
                file_gold, file_pred = read_tag_columns(sys.stdin, "<stdin>", args.skip_docstart)
            else:
                with open(path, encoding="utf-8") as handle:
                    file_gold, file_pred = read_tag_columns(handle, path, args.skip_docstart)
            gold += file_gold
            pred += file_pred
    except UnicodeDecodeError as error:
        # Decoding errors do not name the file; conlleval files are expected in UTF-8.
        print(f"evaluate: error: {path}: not UTF-8 ({error})", file=sys.stderr)
        return 1
    except (EvaluateError, OSError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(format_report(score(gold, pred)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
