"""The pretraining corpus: training splits only, smoothed language weights, windows cut on the fly."""
import re
from pathlib import Path

import pytest
import torch

from minibert_ner.tools.corpus import (Stream, default_files, encode_stream, read_sentences, sample_batch,
                                 smoothed_weights, split_heldout)
from minibert_ner.data import DataError
from minibert_ner.tokenizer import WordPieceTokenizer, learn_vocab

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
NOT_TRAINING = re.compile(r"dev|test", re.IGNORECASE)  # dev-xx.tsv, test.txt, eng.testa, esp.testb ...


def test_the_default_corpus_reads_training_splits_only(shared_data):
    files = default_files(shared_data)
    paths = {p.resolve() for _, p in files}
    assert not [p for p in paths if NOT_TRAINING.search(p.name)]
    held_out = {p.resolve() for p in shared_data.rglob("*") if p.is_file() and NOT_TRAINING.search(p.name)}
    assert held_out and not paths & held_out  # the folder has dev/test files; none is read
    wikiann = {lang for lang, p in files if "wikiann" in p.parts}
    assert wikiann == {p.name for p in (shared_data / "wikiann").iterdir() if p.is_dir()}
    conll = {lang for lang, p in files if "wikiann" not in p.parts}
    assert conll == {"en", "es", "nl", "de"}
    assert len(paths) == len(files)  # e.g. Spanish once, not also its NLTK copy


def test_the_sample_corpus_reads_train_txt_only():
    files = default_files(SAMPLE)
    assert sorted(lang for lang, _ in files) == ["de", "en", "es", "nl", "ru"]
    assert {p.name for _, p in files} == {"train.txt"}


def test_smoothed_weights_upsample_small_languages():
    p = smoothed_weights([100, 1], alpha=0.7)
    assert p.tolist() == pytest.approx([100 ** 0.7 / (100 ** 0.7 + 1), 1 / (100 ** 0.7 + 1)])
    assert p[1] > 1 / 101  # more than its share of the corpus
    assert smoothed_weights([100, 1], alpha=1.0).tolist() == pytest.approx([100 / 101, 1 / 101])
    assert smoothed_weights([100, 1], alpha=0.0).tolist() == pytest.approx([0.5, 0.5])


def test_windows_are_cut_from_sentence_starts_and_languages_follow_the_weights():
    words = [["Köln", "liegt", "am", "Rhein", "."], ["Paris", "ist", "schön"]]
    tok = WordPieceTokenizer({t: i for i, t in enumerate(learn_vocab([w for s in words for w in s], 60))})
    stream = encode_stream(words * 10, tok)
    assert stream.ids.dtype == torch.int32 and len(stream.starts) == 20 and stream.words == 80
    assert stream.ids[stream.starts[1] - 1] == tok.sep_token_id  # [SEP] after every sentence
    other = Stream(torch.full((50,), tok.unk_token_id, dtype=torch.int32), torch.arange(0, 50, 5), 10)
    batch = sample_batch([stream, other], torch.tensor([0.8, 0.2], dtype=torch.float64), 2000, 6, tok,
                         torch.Generator().manual_seed(0))
    assert batch.input_ids.shape == (2000, 6)
    assert (batch.input_ids[:, 0] == tok.cls_token_id).all() and (batch.input_ids[:, -1] == tok.sep_token_id).all()
    firsts = {tuple(stream.ids[s:s + 4].tolist()) for s in stream.starts.tolist()}
    mine = batch.input_ids[batch.lang_ids == 0, 1:5]
    assert all(tuple(row) in firsts for row in mine.tolist())
    assert batch.lang_ids.float().mean().item() == pytest.approx(0.2, abs=0.03)


def test_the_held_out_slice_is_the_last_tenth_at_most():
    train, heldout = split_heldout({"en": [["a"]] * 50, "sw": [["b"]] * 5000})
    assert len(heldout["en"]) == 5 and len(train["en"]) == 45
    assert len(heldout["sw"]) == 200 and len(train["sw"]) == 4800


def test_langs_keeps_only_those_languages_and_an_empty_corpus_is_an_error():
    files = default_files(SAMPLE)
    assert list(read_sentences(files, langs="en,de")) == ["de", "en"]
    with pytest.raises(DataError, match="no text to pretrain on"):
        read_sentences(files, langs="sw")
