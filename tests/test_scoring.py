"""Tests for minibert_ner.scoring: hand-worked IOB1/IOB2 chunking cases."""
import pytest

from minibert_ner.scoring import get_chunks

# Each row: tags, expected (type, start, end_exclusive) chunks, what the case teaches.
CHUNK_CASES = [
    (["I-PER", "I-PER", "B-PER", "O"], [("PER", 0, 2), ("PER", 2, 3)],
     "IOB1: B- separates two adjacent entities of the same type"),
    (["O", "I-LOC", "I-LOC"], [("LOC", 1, 3)], "I- after O starts a chunk; chunk ends at sentence end"),
    (["I-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)], "type change I-PER I-LOC = two chunks"),
    (["O", "B-ORG", "I-ORG"], [("ORG", 1, 3)], "B-X after O also starts a chunk (IOB2 style in IOB1)"),
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)],
     "ill-formed I-X after B-Y starts a new X chunk"),
    (["B-MISC", "B-MISC", "I-MISC"], [("MISC", 0, 1), ("MISC", 1, 3)], "B- after B- of the same type"),
    (["O", "O"], [], "no entities"),
    ([], [], "empty sentence"),
    (["I-ORG-X", "I-ORG-X"], [("ORG-X", 0, 2)], "split at the first hyphen: the type keeps the rest"),
]


@pytest.mark.parametrize("tags, expected, why", CHUNK_CASES, ids=[c[2] for c in CHUNK_CASES])
def test_get_chunks_hand_worked(tags, expected, why):
    assert get_chunks(tags) == expected, why


@pytest.mark.parametrize("bad, position", [(["O", "B_PER"], 1), (["X-LOC"], 0), (["O", "O", "B-"], 2),
                                           (["S-PER"], 0), (["o"], 0)])
def test_get_chunks_rejects_bad_tags(bad, position):
    with pytest.raises(ValueError, match=f"{bad[position]!r} at position {position}"):
        get_chunks(bad)
