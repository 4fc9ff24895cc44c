"""Tests for minibert_ner.scoring and minibert_ner.tools.evaluate.

Three references, from strongest to weakest:
  1. hand-worked IOB1/IOB2 cases and a hand-computed report string;
  2. `conlleval_counts` below: conlleval.pl's one-pass state machine (startOfChunk / endOfChunk /
     the "inCorrect" flag) rewritten in Python, so the set-of-spans scorer is checked against the
     way conlleval actually counts, on random and on real data;
  3. seqeval's default mode (conlleval-compatible), overall and per type, to 1e-12.

seqeval's default mode and conlleval disagree only on tags we reject (E-/S- prefixes, tags
without a type) and in seqeval's `mode="strict"`; for "O"/"B-X"/"I-X" their start/end rules are
the same, and no difference turned up on random ill-formed sequences, so there is no xfail here.
"""
import io
import json
import random
import shutil
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibert_ner.scoring import compute_percentages, format_report, get_chunks, score
from minibert_ner.tools import evaluate

# ----------------------------------------------------------------------------------------------
# get_chunks: hand-worked cases
# ----------------------------------------------------------------------------------------------

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
    (["I-LOC"], [("LOC", 0, 1)], "one-token sentence, chunk at sentence start and end"),
    (["B-PER", "I-PER", "O", "I-PER"], [("PER", 0, 2), ("PER", 3, 4)], "O always ends a chunk"),
    (["O", "O"], [], "no entities"),
    ([], [], "empty sentence"),
    (["I-ORG-X", "I-ORG-X"], [("ORG-X", 0, 2)], "split at the first hyphen: the type keeps the rest"),
]


@pytest.mark.parametrize("tags, expected, why", CHUNK_CASES, ids=[c[2] for c in CHUNK_CASES])
def test_get_chunks_hand_worked(tags, expected, why):
    assert get_chunks(tags) == expected, why


@pytest.mark.parametrize("bad, position", [(["O", "B_PER"], 1), (["X-LOC"], 0), (["O", "O", "B-"], 2),
                                           (["S-PER"], 0), (["E-PER"], 0), (["o"], 0), ([""], 0)])
def test_get_chunks_rejects_bad_tags(bad, position):
    with pytest.raises(ValueError, match=f"{bad[position]!r} at position {position}"):
        get_chunks(bad)


# IOB1 and IOB2 are two spellings of the same chunks: writing chunks out in either scheme and
# reading them back must give them unchanged.
def write_iob2(chunks, length):
    tags = ["O"] * length
    for entity_type, start, end in chunks:
        tags[start:end] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (end - start - 1)
    return tags


def write_iob1(chunks, length):
    tags = ["O"] * length
    previous_end, previous_type = None, None
    for entity_type, start, end in chunks:
        # B- only where the chunk touches a previous chunk of the same type.
        first = "B" if (previous_end == start and previous_type == entity_type) else "I"
        tags[start:end] = [f"{first}-{entity_type}"] + [f"I-{entity_type}"] * (end - start - 1)
        previous_end, previous_type = end, entity_type
    return tags


@st.composite
def chunk_layouts(draw):
    """A sentence length and non-overlapping chunks in it, adjacent ones allowed."""
    length = draw(st.integers(0, 12))
    chunks, position = [], 0
    while position < length:
        position += draw(st.integers(0, 2))  # gap of O tokens, often none
        if position >= length:
            break
        end = draw(st.integers(position + 1, min(length, position + 4)))
        chunks.append((draw(st.sampled_from(["PER", "LOC"])), position, end))
        position = end
    return chunks, length


@settings(max_examples=300, deadline=None)
@given(chunk_layouts())
def test_get_chunks_reads_back_iob1_and_iob2(layout):
    chunks, length = layout
    assert get_chunks(write_iob2(chunks, length)) == chunks
    assert get_chunks(write_iob1(chunks, length)) == chunks


# ----------------------------------------------------------------------------------------------
# score: hand-worked numbers, conventions, errors
# ----------------------------------------------------------------------------------------------


def test_score_hand_worked():
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "I-ORG", "O"]]
    # gold chunks: PER 0-2, LOC 3-4, LOC 4-5, ORG 1-3 ; predicted: PER 0-2, LOC 3-5, ORG 1-2.
    # Only PER matches (IOB2 spelling of the IOB1 chunk is fine); LOC 3-5 merges two gold LOCs.
    s = score(gold, pred)
    assert (s.n_gold, s.n_pred, s.n_correct) == (4, 3, 1)
    assert (s.n_tokens, s.n_correct_tokens) == (8, 4)  # B-PER vs I-PER counts as a wrong tag
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(1 / 4)
    assert s.f1 == pytest.approx(2 / 7)
    assert s.accuracy == 0.5
    assert sorted(s.per_type) == ["LOC", "ORG", "PER"]
    loc = s.per_type["LOC"]
    assert (loc.n_gold, loc.n_pred, loc.n_correct, loc.precision, loc.recall, loc.f1) == (2, 1, 0, 0, 0, 0)


def test_score_conventions_for_empty_counts():
    # No predictions at all: precision 0 (conlleval's convention), recall 0, F1 0.
    s = score([["I-PER", "O"]], [["O", "O"]])
    assert (s.precision, s.recall, s.f1, s.n_pred) == (0.0, 0.0, 0.0, 0)
    # A type only predicted, never in gold: recall 0 for it, and it still gets a row.
    s = score([["O"]], [["B-LOC"]])
    assert s.per_type["LOC"].n_gold == 0 and s.per_type["LOC"].recall == 0.0
    # Nothing at all.
    s = score([], [])
    assert (s.n_tokens, s.accuracy, s.f1, s.per_type) == (0, 0.0, 0.0, {})
    # Perfect prediction.
    s = score([["I-PER", "B-PER"]], [["B-PER", "B-PER"]])
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)


def test_chunks_never_cross_sentences():
    # The same tags as ONE sentence would be one PER chunk 0-2; as two sentences, two chunks.
    s = score([["I-PER"], ["I-PER"]], [["I-PER"], ["I-PER"]])
    assert (s.n_gold, s.n_correct) == (2, 2)
    assert score([["I-PER", "I-PER"]], [["I-PER", "I-PER"]]).n_gold == 1


def test_docstring_examples():
    import doctest

    from minibert_ner import scoring

    assert doctest.testmod(scoring).failed == 0


def test_score_errors_name_the_sentence():
    with pytest.raises(ValueError, match="sentence 1: 2 gold tags but 1 predicted"):
        score([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="gold has 2 sentences but pred has 1"):
        score([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match=r"sentence 1: invalid tag 'B_PER' at position 0"):
        score([["O"], ["B_PER"]], [["O"], ["O"]])


# ----------------------------------------------------------------------------------------------
# Reference 2: conlleval's own one-pass algorithm, rewritten from reading conlleval.pl
# ----------------------------------------------------------------------------------------------


def conlleval_counts(gold, pred):
    """(found_correct, found_guessed, correct_chunk) Counters by type + (correct_tags, tokens).

    conlleval never builds spans: it walks the tokens once, asks "did a chunk end / start between
    the previous and this token?" for each side, and counts a correct chunk when both sides start
    together with the same type and later end together. A blank line is an "O O" token.
    """
    def parse(tag):
        return ("O", "") if tag == "O" else tuple(tag.split("-", 1))

    def chunk_ends(prev, prev_type, tag, tag_type):
        return (prev in ("B", "I") and tag in ("B", "O")) or (prev != "O" and prev_type != tag_type)

    def chunk_starts(prev, prev_type, tag, tag_type):
        return tag == "B" or (prev == "O" and tag == "I") or (tag != "O" and prev_type != tag_type)

    found_correct, found_guessed, correct_chunk = Counter(), Counter(), Counter()
    correct_tags = tokens = 0
    last_c, last_c_type, last_g, last_g_type = "O", "", "O", ""
    in_correct = False
    stream = []
    for gold_tags, pred_tags in zip(gold, pred):
        stream += [(g, p, False) for g, p in zip(gold_tags, pred_tags)] + [("O", "O", True)]
    for gold_tag, pred_tag, is_boundary in stream:
        (c, c_type), (g, g_type) = parse(gold_tag), parse(pred_tag)
        c_end, g_end = chunk_ends(last_c, last_c_type, c, c_type), chunk_ends(last_g, last_g_type, g, g_type)
        c_start, g_start = chunk_starts(last_c, last_c_type, c, c_type), chunk_starts(last_g, last_g_type, g, g_type)
        if in_correct:
            if c_end and g_end and last_g_type == last_c_type:
                in_correct = False
                correct_chunk[last_c_type] += 1
            elif c_end != g_end or g_type != c_type:
                in_correct = False
        if c_start and g_start and g_type == c_type:
            in_correct = True
        if c_start:
            found_correct[c_type] += 1
        if g_start:
            found_guessed[g_type] += 1
        if not is_boundary:
            correct_tags += (c, c_type) == (g, g_type)
            tokens += 1
        last_c, last_c_type, last_g, last_g_type = c, c_type, g, g_type
    if in_correct:
        correct_chunk[last_c_type] += 1
    return found_correct, found_guessed, correct_chunk, correct_tags, tokens


def assert_matches_conlleval(scores, gold, pred):
    found_correct, found_guessed, correct_chunk, correct_tags, tokens = conlleval_counts(gold, pred)
    mine = {t: (s.n_gold, s.n_pred, s.n_correct) for t, s in scores.per_type.items()}
    theirs = {t: (found_correct[t], found_guessed[t], correct_chunk[t])
              for t in found_correct.keys() | found_guessed.keys()}
    assert mine == theirs, f"per-type (gold, found, correct) differ: mine {mine} conlleval {theirs}"
    assert (scores.n_gold, scores.n_pred, scores.n_correct) == (
        sum(found_correct.values()), sum(found_guessed.values()), sum(correct_chunk.values()))
    assert (scores.n_correct_tokens, scores.n_tokens) == (correct_tags, tokens)


# ----------------------------------------------------------------------------------------------
# Random sequences: well-formed IOB1 / IOB2, perturbed, and pure noise (ill-formed transitions)
# ----------------------------------------------------------------------------------------------

TYPES = ["PER", "LOC", "ORG"]
ALL_TAGS = ["O"] + [f"{p}-{t}" for t in TYPES for p in ("B", "I")]


def random_gold(rng, length, scheme):
    chunks, position = [], 0
    while position < length:
        position += rng.choice([0, 0, 1, 1, 2, 3])
        if position >= length:
            break
        end = min(length, position + rng.randint(1, 3))
        chunks.append((rng.choice(TYPES), position, end))
        position = end
    return (write_iob1 if scheme == "IOB1" else write_iob2)(chunks, length)


def random_corpus(rng, n_sentences):
    """Gold/pred pairs mixing schemes; predictions perturbed or pure noise (ill-formed)."""
    gold, pred = [], []
    for _ in range(n_sentences):
        length = rng.randint(0, 10)
        gold_tags = random_gold(rng, length, rng.choice(["IOB1", "IOB2"]))
        kind = rng.random()
        if kind < 0.4:  # noise: any tag anywhere, e.g. I-LOC right after B-PER
            pred_tags = [rng.choice(ALL_TAGS) for _ in range(length)]
        elif kind < 0.6:  # the other scheme's spelling of a random gold, perturbed below too
            pred_tags = random_gold(rng, length, rng.choice(["IOB1", "IOB2"]))
        else:
            pred_tags = list(gold_tags)
        for i in range(length):
            if rng.random() < 0.15:
                pred_tags[i] = rng.choice(ALL_TAGS)
        gold.append(gold_tags)
        pred.append(pred_tags)
    return gold, pred


def test_random_sequences_match_conlleval_algorithm():
    rng = random.Random(0)
    for _ in range(300):
        gold, pred = random_corpus(rng, rng.randint(1, 12))
        assert_matches_conlleval(score(gold, pred), gold, pred)


# ----------------------------------------------------------------------------------------------
# Reference 3: seqeval, default mode
# ----------------------------------------------------------------------------------------------


def seqeval_scores(gold, pred):
    """Overall (p, r, f1) and {type: (p, r, f1, support)} from seqeval's default mode."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    overall = tuple(f(gold, pred, zero_division=0) for f in (precision_score, recall_score, f1_score))
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {t: (r["precision"], r["recall"], r["f1-score"], r["support"])
                for t, r in report.items() if not t.endswith(" avg")}
    return overall, per_type


def assert_matches_seqeval(scores, gold, pred, tolerance=1e-12):
    (p, r, f), per_type = seqeval_scores(gold, pred)
    worst = max(abs(p - scores.precision), abs(r - scores.recall), abs(f - scores.f1))
    assert worst <= tolerance, (
        f"overall max difference {worst:.3e}: mine P/R/F1 {scores.precision, scores.recall, scores.f1} "
        f"seqeval {p, r, f}")
    assert sorted(per_type) == sorted(scores.per_type), f"types: seqeval {sorted(per_type)}"
    for t, (tp, tr, tf, support) in per_type.items():
        mine = scores.per_type[t]
        worst = max(abs(tp - mine.precision), abs(tr - mine.recall), abs(tf - mine.f1))
        assert worst <= tolerance and support == mine.n_gold, (
            f"{t}: max difference {worst:.3e}, mine {mine} seqeval {(tp, tr, tf, support)}")


def test_chunks_match_seqeval_get_entities():
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(1)
    for n in range(3000):
        gold, pred = random_corpus(rng, 1)
        for tags in (gold[0], pred[0]):
            # seqeval's spans are (type, start, end_INCLUSIVE).
            theirs = [(t, start, end + 1) for t, start, end in get_entities(tags)]
            assert get_chunks(tags) == theirs, f"sequence {n} {tags}: seqeval {theirs}"


# seqeval's macro average over zero types (a batch without any chunk) warns inside numpy.
@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
def test_random_corpora_match_seqeval():
    rng = random.Random(2)
    for _ in range(200):
        gold, pred = random_corpus(rng, rng.randint(1, 20))
        assert_matches_seqeval(score(gold, pred), gold, pred)


def test_conlleval_is_seqeval_default_mode_not_strict():
    # An I-LOC after O is an entity to conlleval (and to seqeval's default mode); seqeval's strict
    # IOB2 mode drops it. Real data has such tags (zh WikiANN: hundreds), so the mode matters.
    from seqeval.metrics import recall_score
    from seqeval.scheme import IOB2

    gold, pred = [["O", "I-LOC"]], [["O", "I-LOC"]]
    assert score(gold, pred).recall == 1.0 == recall_score(gold, pred)
    assert recall_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0) == 0.0


# ----------------------------------------------------------------------------------------------
# Real data (shared/data): entity counts and parity under perturbed predictions
# ----------------------------------------------------------------------------------------------


def read_tags(path):
    """Tag (last column) lists per sentence; blank lines split, -DOCSTART- lines are dropped."""
    sentences, current = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if current:
                    sentences.append(current)
                current = []
            else:
                current.append(columns[-1])
    if current:
        sentences.append(current)
    return sentences


def perturb(gold, seed, rate=0.1):
    """Predictions that are gold with ~rate of the tags replaced by random ones from its tag set."""
    rng = random.Random(seed)
    tag_set = sorted({t for tags in gold for t in tags})
    return [[rng.choice(tag_set) if rng.random() < rate else t for t in tags] for tags in gold]


def stats_files(shared_data):
    stats = json.loads((shared_data / "stats.json").read_text(encoding="utf-8"))
    return {name: entry for name, entry in stats.items() if "entity_spans_conlleval" in entry}


REAL_FILES = ["conll2003/en/eng.testa", "conll2002/es/esp.testa", "wikiann/zh/dev-zh.tsv"]


@pytest.mark.slow
def test_get_chunks_reproduces_stats_entity_counts(shared_data):
    files = stats_files(shared_data)
    assert files, "stats.json lists no entity counts"
    mismatches = []
    for name, entry in sorted(files.items()):
        counts = Counter(t for tags in read_tags(shared_data / name) for t, _, _ in get_chunks(tags))
        if dict(counts) != entry["entity_spans_conlleval"]:
            mismatches.append(f"{name}: counted {dict(counts)} stats.json {entry['entity_spans_conlleval']}")
    assert not mismatches, "\n".join(mismatches)
    assert len(files) >= 47, f"only {len(files)} files in stats.json have entity counts"


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_gold_against_perturbed_predictions(shared_data, name):
    gold = read_tags(shared_data / name)
    pred = perturb(gold, seed=len(name))
    scores = score(gold, pred)
    assert 0.3 < scores.f1 < 0.95, "the perturbation should hurt, but not destroy, the scores"
    assert_matches_conlleval(scores, gold, pred)
    assert_matches_seqeval(scores, gold, pred)
    # Scoring gold against itself is perfect and finds exactly stats.json's spans.
    perfect = score(gold, gold)
    assert (perfect.f1, perfect.accuracy) == (1.0, 1.0)
    expected = stats_files(shared_data)[name]["entity_spans_conlleval"]
    assert {t: s.n_gold for t, s in perfect.per_type.items()} == expected


# ----------------------------------------------------------------------------------------------
# The report: conlleval's exact text
# ----------------------------------------------------------------------------------------------


def test_report_hand_computed():
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "I-ORG", "I-ORG"], ["I-WORK_OF_ART"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "I-ORG", "O"], ["I-WORK_OF_ART"]]
    # chunks: gold 5 (PER, LOC, LOC, ORG, WORK_OF_ART), found 4, correct 2 (PER, WORK_OF_ART).
    # tokens 9, identical tags 5 -> 55.56%. P = 2/4 = 50%, R = 2/5 = 40%, F = 2*50*40/90 = 44.44.
    # LOC: found 1 correct 0. ORG: found 1 correct 0. PER and WORK_OF_ART: 1 of 1.
    # A type name longer than 17 characters is not cut ("%17s" only pads).
    expected = (
        "processed 9 tokens with 5 phrases; found: 4 phrases; correct: 2.\n"
        "accuracy:  55.56%; precision:  50.00%; recall:  40.00%; FB1:  44.44\n"
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
        "              ORG: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
        "      WORK_OF_ART: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )
    assert format_report(score(gold, pred)) == expected


def test_report_without_tokens_or_predictions():
    # No tokens: conlleval prints only the first line.
    assert format_report(score([], [])) == "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"
    # Gold has a type that nothing predicted: its line shows 0 found.
    report = format_report(score([["B-LONGER_THAN_SEVENTEEN_X"]], [["O"]]))
    assert report.splitlines()[-1] == (
        "LONGER_THAN_SEVENTEEN_X: precision:   0.00%; recall:   0.00%; FB1:   0.00  0")


def test_percentages_scale_before_dividing_like_conlleval():
    # conlleval computes 100*c/n in Perl; (c/n)*100 can be a different double and, on a rounding
    # boundary, print different digits. Find such a case and check we print conlleval's digits.
    case = next((c, n) for n in range(1, 2000) for c in range(n + 1)
                if "%6.2f" % (100 * c / n) != "%6.2f" % (c / n * 100))
    c, n = case
    precision, _, _ = compute_percentages(c, n, n)
    assert "%6.2f" % precision == "%6.2f" % (100 * c / n), case


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl not installed")
def test_percentages_print_like_perl():
    # conlleval's numbers come from Perl doubles through C printf("%6.2f"); run the same three
    # formulas in Perl on random counts and compare the printed digits.
    rng = random.Random(3)
    cases = []
    for _ in range(3000):
        n_pred = rng.randint(1, 5000)
        n_correct = rng.randint(0, n_pred)
        cases.append((n_correct, n_pred, rng.randint(max(n_correct, 1), 6000)))
    program = (r'while(<STDIN>){($c,$n,$g)=split; $p=100*$c/$n; $r=100*$c/$g;'
               r' $f=($p+$r>0)?2*$p*$r/($p+$r):0; printf "%6.2f %6.2f %6.2f\n",$p,$r,$f}')
    text = "".join(f"{c} {n} {g}\n" for c, n, g in cases)
    perl = subprocess.run(["perl", "-e", program], input=text, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    mine = ["%6.2f %6.2f %6.2f" % compute_percentages(*case) for case in cases]
    mismatches = [(case, p, m) for case, p, m in zip(cases, perl, mine) if p != m]
    assert len(perl) == len(cases) and not mismatches, f"first mismatch (counts, perl, mine): {mismatches[:1]}"


# ----------------------------------------------------------------------------------------------
# The command line: python -m minibert_ner.tools.evaluate
# ----------------------------------------------------------------------------------------------

CONLLEVAL_INPUT = """\
-DOCSTART- -X- O O

U.N. NNP I-ORG I-ORG
official NN O O
Ekeus NNP I-PER I-PER
heads VBZ O O

for IN O O
Baghdad NNP I-LOC O
"""


def test_evaluate_cli_prints_the_report(tmp_path, capsys):
    path = tmp_path / "out.txt"
    path.write_text(CONLLEVAL_INPUT, encoding="utf-8")
    assert evaluate.main([str(path)]) == 0
    # -DOCSTART- is a token to conlleval (7 tokens, 6 correct tags).
    assert capsys.readouterr().out == (
        "processed 7 tokens with 3 phrases; found: 2 phrases; correct: 2.\n"
        "accuracy:  85.71%; precision: 100.00%; recall:  66.67%; FB1:  80.00\n"
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0\n"
        "              ORG: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )
    assert evaluate.main(["--skip-docstart", str(path)]) == 0
    assert capsys.readouterr().out.startswith("processed 6 tokens with 3 phrases;")


def test_evaluate_cli_reads_stdin_and_pools_files(tmp_path, capsys, monkeypatch):
    path = tmp_path / "a.tsv"
    path.write_text("x\tI-PER\tI-PER\n\n", encoding="utf-8")  # tabs work too
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"y I-PER\tO\n")))
    assert evaluate.main([str(path), "-"]) == 0
    assert capsys.readouterr().out.startswith("processed 2 tokens with 2 phrases; found: 1 phrases; correct: 1.")


def test_evaluate_cli_boundaries():
    # Blank lines, whitespace-only lines and conlleval's "-X-" marker all end a sentence;
    # a file end closes the last sentence.
    lines = ["a I-PER I-PER", " \r", "b I-PER I-PER", "-X- O O", "c I-PER I-PER"]
    gold, pred = evaluate.read_tag_columns((f"t:{i}", line) for i, line in enumerate(lines, 1))
    assert gold == pred == [["I-PER"], ["I-PER"], ["I-PER"]]


@pytest.mark.parametrize("text, message", [
    ("a O O\nb\n", "bad.txt:2: expected at least 2 columns"),
    ("a O O\n\nb x O O\n", "bad.txt:3: expected 3 columns like the first line, got 4"),
    ("a O O\nb B_PER O\n", "bad.txt:2: gold tag: invalid tag 'B_PER'"),
    ("a O O\nb O X-LOC\n", "bad.txt:2: predicted tag: invalid tag 'X-LOC'"),
])
def test_evaluate_cli_errors_name_file_and_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    assert evaluate.main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err, captured.err


def test_evaluate_cli_help_teaches(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("GOLD_TAG  PREDICTED_TAG", "blank line between sentences", "FB1", "-DOCSTART-"):
        assert phrase in text


def test_evaluate_cli_matches_score_on_real_data(shared_data, tmp_path, capsys):
    gold = read_tags(shared_data / "conll2002/es/esp.testb")
    pred = perturb(gold, seed=7)
    path = tmp_path / "esp.testb.out"
    path.write_text("".join("".join(f"w {g} {p}\n" for g, p in zip(gs, ps)) + "\n"
                            for gs, ps in zip(gold, pred)), encoding="utf-8")
    assert evaluate.main([str(path)]) == 0
    assert capsys.readouterr().out == format_report(score(gold, pred))


def test_evaluate_cli_counts_docstart_like_published_conlleval_runs(shared_data, tmp_path, capsys):
    # Published conlleval runs on CoNLL-2003 eng.testa all begin "processed 51578 tokens with
    # 5942 phrases": 51,362 tokens plus its 216 -DOCSTART- lines. --skip-docstart gives 51,362.
    path = tmp_path / "eng.testa.out"
    with open(shared_data / "conll2003/en/eng.testa", encoding="utf-8") as handle:
        # Gold tag repeated as the prediction: word POS chunk GOLD GOLD.
        path.write_text("".join(f"{line.rstrip()} {line.split()[-1]}\n" if line.strip() else "\n"
                                for line in handle), encoding="utf-8")
    assert evaluate.main([str(path)]) == 0
    assert capsys.readouterr().out.startswith("processed 51578 tokens with 5942 phrases; found: 5942")
    assert evaluate.main(["--skip-docstart", str(path)]) == 0
    assert capsys.readouterr().out.startswith("processed 51362 tokens with 5942 phrases;")
