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
