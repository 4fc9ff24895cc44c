"""Tests for minibert_ner.data: readers against the real corpora's published counts, every error
path naming file and line, IOB1/IOB2 conversions, labels, and the sample."""
import importlib.util
import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibert_ner.data import (
    DataError,
    Sentence,
    build_label_list,
    check_labels,
    convert_scheme,
    detect_scheme,
    infer_lang,
    iob1_to_iob2,
    iob2_to_iob1,
    read_conll,
    read_text,
    write_conll,
)
from minibert_ner.scoring import get_chunks

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
LANGS = ["en", "de", "es", "nl", "ru"]


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------------------------------
# Real data: every file in shared/data/stats.json
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_readers_reproduce_stats_json_for_every_file(shared_data):
    """Sentences, tokens, -DOCSTART- lines and conlleval entity spans per type, for all 47 files.

    -DOCSTART- lines are counted as the non-blank lines no sentence covers, which also proves
    that nothing was silently skipped and that every Sentence.line points at its first word.
    """
    stats = json.loads((shared_data / "stats.json").read_text(encoding="utf-8"))
    assert len(stats) == 47
    mismatches = []
    for name, expected in stats.items():
        path = shared_data / name
        sentences = read_conll(path)
        lines = path.read_text(encoding="utf-8").split("\n")
        covered = set()
        for sentence in sentences:
            for offset, word in enumerate(sentence.words):
                assert lines[sentence.line - 1 + offset].split()[0] == word, (name, sentence.line, offset)
                covered.add(sentence.line - 1 + offset)
        leftover = [line for i, line in enumerate(lines) if line.split() and i not in covered]
        assert all(line.split()[0] == "-DOCSTART-" for line in leftover), (name, leftover[:3])
        entities = Counter(chunk[0] for s in sentences for chunk in get_chunks(s.tags))
        got = {"sentences": len(sentences), "tokens": sum(len(s.words) for s in sentences),
               "docstart_lines": len(leftover), "entity_spans_conlleval": dict(entities)}
        want = {key: expected[key] for key in got}
        if got != want:
            mismatches.append(f"{name}: got {got}, expected {want}")
        assert sentences[0].lang == infer_lang(path) and len(sentences[0].lang) == 2
    assert not mismatches, f"{len(mismatches)} file(s) differ; first: {mismatches[0]}"


def test_real_schemes_and_quirks(shared_data):
    eng = read_conll(shared_data / "conll2003/en/eng.testa")
    assert eng[0].lang == "en" and detect_scheme(eng) == "IOB1"
    esp = read_conll(shared_data / "conll2002/es/esp.testa")
    assert detect_scheme(esp) == "IOB2"
    # The one I-LOC after O in esp.testa (line 30882, "Río") is an entity start: IOB2 writes it B-.
    (quirk,) = [s for s in esp if s.line <= 30882 < s.line + len(s.words)]
    position = 30882 - quirk.line
    assert quirk.words[position] == "Río" and quirk.tags[position] == "I-LOC"
    assert iob1_to_iob2(quirk.tags)[position] == "B-LOC"
    # The derived German train: CRLF, " \r" separators, and the spurious bare "\r" on line 15.
    derived = read_conll(shared_data / "conll2003/de/derived-flydzy/train.txt", scheme="IOB1")
    assert derived[0].lang == "de"
    assert (derived[1].line, derived[1].words[-2:], derived[1].tags[-2:]) == (9, ["Albrecht", "Lehmann"], ["I-PER"] * 2)
    assert (derived[2].line, derived[2].words[0]) == (16, "läßt")
    assert not any("\r" in w or "\r" in t for s in derived[:100] for w, t in zip(s.words, s.tags))


# ---------------------------------------------------------------------------------------------
# Formats and errors on small hand-made files
# ---------------------------------------------------------------------------------------------
def test_crlf_whitespace_separators_and_docstart_without_blank_line(tmp_path):
    path = write(tmp_path, "mini-de.tsv", "-DOCSTART- O\r\n \r\nEU I-ORG\r\nlehnt O\r\n\r\n"
                                          "deutsche I-MISC\r\n \r\n-DOCSTART- O\r\nBonn I-LOC\r\n")
    sentences = read_conll(path)
    assert [(s.words, s.tags, s.line) for s in sentences] == [
        (["EU", "lehnt"], ["I-ORG", "O"], 3), (["deutsche"], ["I-MISC"], 6), (["Bonn"], ["I-LOC"], 9)]
    assert sentences[0].lang == "de" and sentences[0].source == str(path)
    assert [s.tags for s in read_conll(path, scheme="IOB2")] == [["B-ORG", "O"], ["B-MISC"], ["B-LOC"]]


def test_latin1_file_read_as_utf8_says_what_to_do(tmp_path):
    path = write(tmp_path, "esp.train", "El O\nRío I-LOC\n", encoding="latin-1")
    with pytest.raises(DataError, match=rf"{path}:2: byte 0xed is not valid utf-8; .*pass --encoding latin-1"):
        read_conll(path)
    assert read_conll(path, encoding="latin-1")[0].words == ["El", "Río"]
    raw = write(tmp_path, "raw.txt", "Río\n", encoding="latin-1")
    with pytest.raises(DataError, match=rf"{raw}:1: byte 0xed is not valid utf-8; .*--encoding latin-1"):
        read_text(raw, "es")


def test_latin1_choice_on_a_utf8_file_warns(tmp_path):
    # Each file is decoded on its own: a UTF-8 file read as Latin-1 would give "fÃ¼r"; say so.
    path = write(tmp_path, "deu.train", "für O\n")
    with pytest.warns(UserWarning, match=rf"{path}: read as latin-1, but it is valid UTF-8 .*iconv"):
        assert read_conll(path, encoding="latin-1")[0].words == ["fÃ¼r"]
    with pytest.warns(UserWarning, match=rf"{path}: read as cp1252"):
        read_text(path, "de", encoding="cp1252")
    ascii_only = write(tmp_path, "eng.train", "EU I-ORG\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pure ASCII reads the same in both: nothing to warn about
        read_conll(ascii_only, encoding="latin-1")
    with pytest.raises(DataError, match=rf"{ascii_only}:0: unknown encoding 'latin-9x'"):
        read_conll(ascii_only, encoding="latin-9x")


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_byte_order_mark_is_dropped_everywhere(tmp_path, encoding):
    bom = b"\xef\xbb\xbf"
    path = tmp_path / "eng.train"
    path.write_bytes(bom + b"-DOCSTART- -X- O\n\nEU I-ORG\n")  # the marker, not a sentence
    assert [(s.words, s.line) for s in read_conll(path, encoding=encoding)] == [(["EU"], 3)]
    path.write_bytes(bom + b"EU I-ORG\n")
    assert read_conll(path, encoding=encoding)[0].words == ["EU"]
    path.write_bytes(bom + b"EU rejects\n")
    assert read_text(path, "en", encoding=encoding)[0].words == ["EU", "rejects"]


@pytest.mark.parametrize("token", [
    "10\u00a0000",  # NBSP inside a number
    "a\u2028b",  # LINE SEPARATOR
    "a\x1fb",  # UNIT SEPARATOR, a control character
    "a\x85b",  # NEXT LINE
    "a\u3000b",  # IDEOGRAPHIC SPACE
    "\u00a0",  # a token that is only a no-break space
])
def test_only_ascii_whitespace_separates_columns(tmp_path, token):
    # Space, tab, \r, \v and \f separate columns; any other character, even one Python calls
    # whitespace, is part of the token, so the tag stays the last column.
    path = write(tmp_path, "eng.train", f"EU I-ORG\n{token} O\nBonn\t \x0b\x0cI-LOC\r\n")
    (sentence,) = read_conll(path)
    assert sentence.words == ["EU", token, "Bonn"] and sentence.tags == ["I-ORG", "O", "I-LOC"]


@pytest.mark.parametrize("text, line, what", [
    ("EU NNP I-ORG\nrejects VBZ\n", 2, "2 column(s), expected 3"),
    ("EU NNP I-ORG\n\nrejects VBZ B-NP O\n", 3, "4 column"),
    ("EU\n", 1, "1 column; expected at least 2"),
    ("EU O\nPeter B_PER\n", 2, "bad tag 'B_PER'"),
    ("EU X-LOC\n", 1, "bad tag 'X-LOC'"),
    ("EU O\n\nPeter B-\n", 3, "bad tag 'B-'"),
    ("", 1, "no sentences"),
    ("\n \n\r\n", 1, "no sentences"),
    ("-DOCSTART- -X- O\n\n", 1, "no sentences"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path, "eng.bad", text)
    with pytest.raises(DataError) as error:
        read_conll(path)
    assert str(error.value).startswith(f"{path}:{line}: ") and what in str(error.value), str(error.value)


def test_missing_file_and_unknown_language(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'eng.nothere'}.*no such file"):
        read_conll(tmp_path / "eng.nothere")
    path = write(tmp_path, "corpus.txt", "EU I-ORG\n")
    with pytest.raises(DataError, match="give it as LANG="):
        read_conll(path)
    (tmp_path / "xy").mkdir()  # a folder named like no language is no language (it used to say "xy")
    with pytest.raises(DataError, match="give it as LANG="):
        read_conll(write(tmp_path / "xy", "train.txt", "EU I-ORG\n"))
    assert read_conll(path, lang="xx")[0].lang == "xx"


@pytest.mark.parametrize("path, lang", [
    ("conll2003/en/eng.train", "en"), ("x/deu.testa", "de"), ("esp.testb", "es"), ("nltk/ned.train", "nl"),
    ("wikiann/zh/dev-zh.tsv", "zh"), ("conll2003/de/derived-flydzy/train.txt", "de"),
    ("raw/conll2003-de/derived-train.txt", "de"), ("data/sample/ru/test.txt", "ru"),
])
def test_infer_lang(path, lang):
    assert infer_lang(path) == lang


# ---------------------------------------------------------------------------------------------
# Tag schemes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("iob1, iob2", [
    (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    (["I-ORG", "I-LOC", "I-LOC", "B-LOC"], ["B-ORG", "B-LOC", "I-LOC", "B-LOC"]),
    (["O", "O"], ["O", "O"]),
    ([], []),
])
def test_hand_worked_conversions(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2 and iob2_to_iob1(iob2) == iob1
    assert convert_scheme(iob1, "IOB2") == iob2 and convert_scheme(iob2, "IOB1") == iob1


def test_irregular_tags_keep_their_chunks():
    # IOB2 data with an I- after O (Spanish quirk) and IOB1 data with a stray B- (English quirk).
    assert iob1_to_iob2(["O", "I-LOC", "I-LOC"]) == ["O", "B-LOC", "I-LOC"]
    assert iob2_to_iob1(["O", "B-MISC", "I-MISC"]) == ["O", "I-MISC", "I-MISC"]
    with pytest.raises(ValueError, match="IOBES"):
        convert_scheme(["O"], "IOBES")
    assert detect_scheme([Sentence(["a"], ["O"], "en")]) is None


TAGS = st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC-X", "I-MISC-X"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(TAGS)
def test_conversions_preserve_chunks_of_any_sequence(tags):
    assert get_chunks(iob1_to_iob2(tags)) == get_chunks(tags)
    assert get_chunks(iob2_to_iob1(tags)) == get_chunks(tags)


@st.composite
def well_formed_iob2(draw):
    """IOB2 built from chunks: spans of random types with random gaps (possibly none) between."""
    tags = []
    for _ in range(draw(st.integers(0, 8))):
        tags += ["O"] * draw(st.integers(0, 2))
        entity_type, length = draw(st.sampled_from(["PER", "LOC", "ORG"])), draw(st.integers(1, 3))
        tags += ["B-" + entity_type] + ["I-" + entity_type] * (length - 1)
    return tags


@settings(max_examples=300, deadline=None)
@given(well_formed_iob2())
def test_well_formed_sequences_round_trip(iob2):
    iob1 = iob2_to_iob1(iob2)
    assert iob1_to_iob2(iob1) == iob2 and iob2_to_iob1(iob1_to_iob2(iob1)) == iob1
    # IOB1 writes B- exactly where an entity touches one of the same type, I- everywhere else.
    for i, tag in enumerate(iob2):
        glued = tag.startswith("B-") and i > 0 and iob2[i - 1][2:] == tag[2:]
        assert iob1[i].startswith("B-") == glued and iob1[i][2:] == tag[2:]
    assert get_chunks(iob1) == get_chunks(iob2)


# ---------------------------------------------------------------------------------------------
# Labels, raw text, writing
# ---------------------------------------------------------------------------------------------
def test_build_label_list_order_is_stable_and_has_both_prefixes():
    a = Sentence(["Bonn", "Peter"], ["I-LOC", "I-PER"], "de")
    b = Sentence(["x"], ["O"], "de")
    expected = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    assert build_label_list([a, b]) == expected and build_label_list([b, a]) == expected
    assert build_label_list([b]) == ["O"]


def test_check_labels_names_file_and_line(tmp_path):
    train = [Sentence(["Bonn"], ["I-LOC"], "de")]
    path = write(tmp_path, "deu.testa", "in O\nBonn I-LOC\nbei O\nSiemens I-ORG\n")
    test = read_conll(path)
    labels = build_label_list(train)
    with pytest.raises(DataError, match=rf"{path}:4: tag 'I-ORG' never seen in training"):
        check_labels(test, labels)
    with pytest.warns(UserWarning, match=rf"{path}:4"):
        assert check_labels(test, labels, strict=False) == 1


def test_read_text_from_file_and_lines(tmp_path):
    path = write(tmp_path, "raw.txt", "Peter lebt in Köln.\n\n  Bonn ist  klein \n")
    sentences = read_text(path, "de")
    assert [(s.words, s.tags, s.line, s.lang) for s in sentences] == [
        (["Peter", "lebt", "in", "Köln."], [], 1, "de"), (["Bonn", "ist", "klein"], [], 3, "de")]
    assert read_text(["a b", "c"], "en")[1].words == ["c"]


def test_write_conll_round_trips_and_adds_predictions(tmp_path):
    sentences = [Sentence(["EU", "rejects"], ["I-ORG", "O"], "en"), Sentence(["Bonn"], ["I-LOC"], "en")]
    write_conll(tmp_path / "gold.txt", sentences)
    again = read_conll(tmp_path / "gold.txt", lang="en")
    assert [(s.words, s.tags) for s in again] == [(s.words, s.tags) for s in sentences]
    write_conll(tmp_path / "pred.txt", sentences, [["I-ORG", "O"], ["I-PER"]])
    assert (tmp_path / "pred.txt").read_text(encoding="utf-8") == "EU I-ORG I-ORG\nrejects O O\n\nBonn I-LOC I-PER\n\n"
    with pytest.raises(DataError, match="differ in length"):
        write_conll(tmp_path / "bad.txt", sentences, [["O"], ["O"]])


# ---------------------------------------------------------------------------------------------
# The synthetic sample in data/
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGS)
def test_sample_is_readable_iob1_and_not_pure_memorisation(lang):
    splits = {split: read_conll(SAMPLE / lang / f"{split}.txt") for split in ("train", "dev", "test")}
    assert [len(splits[s]) for s in splits] == [400, 100, 100]
    assert all(s.lang == lang for sentences in splits.values() for s in sentences)
    assert detect_scheme(splits["train"]) == "IOB1"
    assert build_label_list(splits["train"]) == ["O"] + [p + "-" + t for p in "BI" for t in ["LOC", "MISC", "ORG", "PER"]]
    assert any("B-ORG" in s.tags for s in splits["train"])          # adjacent same-type entities
    assert sum(len(s.words) >= 60 for s in splits["train"]) >= 5     # longer than a 64-piece window
    names = {split: {" ".join(s.words[a:b]) for s in sentences for _, a, b in get_chunks(s.tags)}
             for split, sentences in splits.items()}
    assert len(names["test"] - names["train"]) >= 10                  # unseen names in test
    raw = read_text(SAMPLE / "unlabeled" / f"{lang}.txt", lang)
    assert len(raw) == 200 and all(s.tags == [] for s in raw)


def test_sample_has_sentences_longer_than_a_window_in_mbert_pieces(mbert_vocab):
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(mbert_vocab), do_lower_case=False)
    for lang in LANGS:
        sentences = read_conll(SAMPLE / lang / "train.txt")
        pieces = [len(tokenizer(s.words, is_split_into_words=True, add_special_tokens=False)["input_ids"])
                  for s in sentences]
        assert sum(n > 62 for n in pieces) >= 3, (lang, max(pieces))  # 62 + [CLS] + [SEP] = 64


def test_make_sample_regenerates_the_committed_files_byte_identically(tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "data" / "make_sample.py")
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    make_sample.main(["--out", str(tmp_path)])
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.txt"))
    committed = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*.txt"))
    assert made == committed and len(made) == 5 * 3 + 5
    differ = [str(p) for p in made if (tmp_path / p).read_bytes() != (SAMPLE / p).read_bytes()]
    assert not differ, f"regenerated files differ from the committed ones: {differ}"
