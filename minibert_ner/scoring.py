"""Entity-level scoring with the exact semantics of the CoNLL shared tasks' `conlleval` script.

What it does: turns IOB1 or IOB2 tag sequences into chunks (typed spans), compares predicted with
gold chunks, and computes precision / recall / F1 per entity type and overall, plus token accuracy,
all as `conlleval` (Tjong Kim Sang, version 2004-01-26) computes them. `format_report` prints the
same text `conlleval` prints, so numbers can be compared with published tables digit for digit.
The paper reports entity-level F1 from this script (Moon et al., Section 4: "Experiments").

What it leaves out: IOBES/BILOU tags, conlleval's raw (`-r`) and LaTeX (`-l`) modes, and reading
files (that is `evaluate.py`). Tags must be "O" or "B-TYPE" / "I-TYPE"; anything else is an error
here, where conlleval would silently treat it as its own kind of tag.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


# A tag is "O" or PREFIX-TYPE. Like conlleval, we split at the FIRST hyphen, so a type may itself
# contain hyphens ("B-ORG-X" has type "ORG-X").
def split_tag(tag: str, position: int | None = None) -> tuple[str, str]:
    """Return (prefix, type) for a tag: ("O", "") for "O", ("B", "PER") for "B-PER".

    Raises ValueError naming the tag (and its position, when given) for anything that is not
    "O", "B-TYPE" or "I-TYPE" with a non-empty TYPE.
    """
    if tag == "O":
        return "O", ""
    prefix, hyphen, entity_type = tag.partition("-")
    if prefix in ("B", "I") and hyphen and entity_type:
        return prefix, entity_type
    where = f" at position {position}" if position is not None else ""
    raise ValueError(
        f"invalid tag {tag!r}{where}: expected 'O', 'B-TYPE' or 'I-TYPE' (IOB1/IOB2 only)"
    )


def get_chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """Chunks of one sentence as (type, start, end_exclusive), in order, by conlleval's rules.

    >>> get_chunks(["I-PER", "I-PER", "B-PER", "O", "B-LOC", "I-ORG"])
    [('PER', 0, 2), ('PER', 2, 3), ('LOC', 4, 5), ('ORG', 5, 6)]
    """
    chunks: list[tuple[str, int, int]] = []
    # The open chunk, if any: its type and first index. None means we are outside every chunk,
    # which is also the state at the sentence start (conlleval's implicit "O" before token 0).
    open_type: str | None = None
    open_start = 0
    for i, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag, i)
        # A chunk ENDS before this token when the token is O, a B- (always a new chunk, in both
        # IOB1 and IOB2), or a tag of another type (I-LOC right after I-PER: the PER chunk stops).
        # The same three conditions are exactly when a non-O token STARTS a chunk, so one test
        # serves both; the only other start, I-X after O, is covered by `open_type is None`.
        # Note an ill-formed I-X after B-Y therefore starts a new X chunk, as in conlleval.
        continues = prefix == "I" and entity_type == open_type
        if continues:
            continue
        if open_type is not None:
            chunks.append((open_type, open_start, i))
        if prefix == "O":
            open_type = None
        else:
            open_type, open_start = entity_type, i
    # The sentence end closes whatever is open (conlleval sees the blank line as an "O").
    if open_type is not None:
        chunks.append((open_type, open_start, len(tags)))
    return chunks


# ----------------------------------------------------------------------------------------------
# Counting and the three ratios
# ----------------------------------------------------------------------------------------------


@dataclass
class TypeScores:
    """Scores for one entity type; precision/recall/f1 are fractions in [0, 1]."""

    precision: float
    recall: float
    f1: float
    n_gold: int  # chunks of this type in the gold tags
    n_pred: int  # chunks of this type in the predicted tags ("found" in conlleval's report)
    n_correct: int  # predicted chunks with exactly the gold type, start and end


@dataclass
class Scores:
    """Overall scores (fractions in [0, 1]), the counts behind them, and a TypeScores per type."""

    precision: float
    recall: float
    f1: float
    accuracy: float  # token accuracy: identical tag strings, over all tokens
    n_gold: int
    n_pred: int
    n_correct: int
    n_tokens: int
    n_correct_tokens: int
    per_type: dict[str, TypeScores] = field(default_factory=dict)


def compute_precision_recall_f1(n_correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """(precision, recall, F1) as fractions, with conlleval's conventions for empty counts."""
    # No predictions -> precision 0 (not undefined, not 1); no gold chunks -> recall 0.
    precision = n_correct / n_pred if n_pred > 0 else 0.0
    recall = n_correct / n_gold if n_gold > 0 else 0.0
    # F1 is the harmonic mean; conlleval defines it as 0 when both ratios are 0.
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def score(gold: list[list[str]], pred: list[list[str]]) -> Scores:
    """Compare predicted with gold tags, sentence by sentence, as conlleval does.

    A predicted chunk is correct only when a gold chunk has the same sentence, type, start and
    end: a chunk one token too long, or right span with wrong type, earns nothing. Gold and
    prediction may use different schemes (IOB1 vs IOB2): chunks are compared, not tags.
    Raises ValueError naming the sentence when lengths differ, and any invalid tag.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    gold_chunks: set[tuple[int, str, int, int]] = set()
    pred_chunks: set[tuple[int, str, int, int]] = set()
    n_tokens = n_correct_tokens = 0
    for sentence, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(
                f"sentence {sentence}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted tags"
            )
        try:
            # Keying every chunk by its sentence index keeps chunks of different sentences
            # apart, which is what conlleval's blank line between sentences achieves.
            gold_chunks.update((sentence, *chunk) for chunk in get_chunks(gold_tags))
            pred_chunks.update((sentence, *chunk) for chunk in get_chunks(pred_tags))
        except ValueError as error:
            raise ValueError(f"sentence {sentence}: {error}") from None
        # Token accuracy compares whole tag strings: gold I-PER vs predicted B-PER is a wrong tag
        # even where the chunks agree (IOB1 gold scored against IOB2 predictions loses accuracy).
        n_tokens += len(gold_tags)
        n_correct_tokens += sum(g == p for g, p in zip(gold_tags, pred_tags))
    # conlleval never builds spans: it walks the tokens once and counts a chunk as correct when
    # gold and prediction start a chunk of the same type on the same token and both end it on the
    # same token. That is exactly "the same (sentence, type, start, end) on both sides", so a set
    # intersection gives conlleval's count (tests/test_scoring.py checks it against that walk).
    correct_chunks = gold_chunks & pred_chunks

    # Per type: every type seen on either side gets a row, even with zero gold or zero found.
    gold_per_type = Counter(chunk[1] for chunk in gold_chunks)
    pred_per_type = Counter(chunk[1] for chunk in pred_chunks)
    correct_per_type = Counter(chunk[1] for chunk in correct_chunks)
    per_type = {}
    for entity_type in sorted(gold_per_type.keys() | pred_per_type.keys()):
        n_correct, n_pred, n_gold = (
            correct_per_type[entity_type], pred_per_type[entity_type], gold_per_type[entity_type]
        )
        precision, recall, f1 = compute_precision_recall_f1(n_correct, n_pred, n_gold)
        per_type[entity_type] = TypeScores(precision, recall, f1, n_gold, n_pred, n_correct)

    # Overall scores are MICRO averages: pooled counts, not a mean of the per-type scores.
    precision, recall, f1 = compute_precision_recall_f1(len(correct_chunks), len(pred_chunks), len(gold_chunks))
    return Scores(
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=n_correct_tokens / n_tokens if n_tokens > 0 else 0.0,
        n_gold=len(gold_chunks),
        n_pred=len(pred_chunks),
        n_correct=len(correct_chunks),
        n_tokens=n_tokens,
        n_correct_tokens=n_correct_tokens,
        per_type=per_type,
    )


# ----------------------------------------------------------------------------------------------
# conlleval's report, character for character
# ----------------------------------------------------------------------------------------------


def compute_percentages(n_correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """(precision %, recall %, FB1) computed in the order conlleval computes them.

    Scaling by 100 BEFORE dividing (100 * 7 / 9, not (7 / 9) * 100) gives the same double as
    conlleval's Perl, so a value that lands on a rounding boundary prints the same digits.
    """
    precision = 100 * n_correct / n_pred if n_pred > 0 else 0.0
    recall = 100 * n_correct / n_gold if n_gold > 0 else 0.0
    fb1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, fb1


def format_report(scores: Scores) -> str:
    """The text conlleval prints for these scores (each line ends with a newline).

    Example (the worked example at the bottom of this file):
        processed 8 tokens with 4 phrases; found: 3 phrases; correct: 1.
        accuracy:  50.00%; precision:  33.33%; recall:  25.00%; FB1:  28.57
                      LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1
    The last number on a type line is how many chunks of that type were FOUND (predicted),
    not how many the gold data has: a frequent source of confusion when reading these reports.
    """
    lines = [
        f"processed {scores.n_tokens} tokens with {scores.n_gold} phrases; "
        f"found: {scores.n_pred} phrases; correct: {scores.n_correct}."
    ]
    # conlleval skips the accuracy line altogether when it saw no tokens (it would divide by 0).
    if scores.n_tokens > 0:
        accuracy = 100 * scores.n_correct_tokens / scores.n_tokens
        precision, recall, fb1 = compute_percentages(scores.n_correct, scores.n_pred, scores.n_gold)
        lines.append(
            "accuracy: %6.2f%%; precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f"
            % (accuracy, precision, recall, fb1)
        )
    # %17s right-aligns the type name, as in conlleval's printf; types come sorted (codepoint order
    # equals Perl's default byte order for UTF-8 strings).
    for entity_type, type_scores in sorted(scores.per_type.items()):
        precision, recall, fb1 = compute_percentages(
            type_scores.n_correct, type_scores.n_pred, type_scores.n_gold
        )
        lines.append(
            "%17s: precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %d"
            % (entity_type, precision, recall, fb1, type_scores.n_pred)
        )
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":
    # A worked example: `python -m minibert_ner.scoring` prints every step.
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "I-ORG", "O"]]
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        print(f"sentence {index}: gold chunks {get_chunks(gold_tags)}")
        print(f"            pred chunks {get_chunks(pred_tags)}")
    print(format_report(score(gold, pred)), end="")
