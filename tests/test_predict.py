"""Tagging from Python and the command line, and checkpoints that transformers reads right.

The round trip: a run's best/ folder, opened with transformers' AutoTokenizer and
AutoModelForTokenClassification, gives predict's tag for every word, for a cased and an uncased
model, and pipeline("token-classification") handles texts longer than the model's positions.
"""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import minibert_ner
from minibert_ner import predict
from minibert_ner.data import read_conll
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.predict import Entity
from minibert_ner.tokenizer import WordPieceTokenizer, learn_vocab
from minibert_ner.train import TrainConfig, train
from minibert_ner.weights import save_bert

from conftest import DEVICES, write_tiny_unigram_model

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# sentences of the training sample, which the tiny models learn by heart: they find entities there
TRAINING = [s.words for lang in ("en", "de") for s in read_conll(SAMPLE / lang / "train.txt")[:20]]
TEXTS = [" ".join(words) for words in TRAINING if len(words) > 5][:6]
LONG = " ".join(TEXTS * 4)  # ~200 pieces: longer than the 64 positions of the tiny models


def run(tmp_path, name, **kw):
    cfg = TrainConfig(train=[("en", str(SAMPLE / "en/train.txt")), ("de", str(SAMPLE / "de/train.txt"))],
                      max_sentences=20, epochs=25, lr=3e-3, batch_size=8, out=str(tmp_path / name), tiny=TINY,
                      quiet=True)
    train(replace(cfg, **kw))
    return tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cased run (the demo's own vocabulary), an uncased one (a lowercased vocabulary in a model
    folder whose tokenizer_config.json says do_lower_case) and a SentencePiece one (a Unigram
    tokenizer.json, as multilingual-e5-small's)."""
    tmp = tmp_path_factory.mktemp("predict")
    uncased = tmp / "uncased-bert"
    words = [w.lower() for f in ("en", "de") for line in (SAMPLE / f / "train.txt").read_text().splitlines()
             for w in line.split()[:1]]
    vocab = learn_vocab(words, 1500)
    torch.manual_seed(0)
    save_bert(BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=64, **TINY)), uncased)
    (uncased / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    (uncased / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    sentencepiece = write_tiny_unigram_model(tmp / "tiny-sp")
    return {"cased": run(tmp, "cased"), "uncased": run(tmp, "uncased", model=str(uncased)),
            "unigram": run(tmp, "unigram", model=str(sentencepiece))}


def test_the_tagger_returns_entities_as_written(runs):
    tagger = minibert_ner.load(runs["uncased"])
    assert tagger.tok.lowercase  # read from the run's tokenizer_config.json
    found = tagger("ANGELA MERKEL besuchte PARIS.")
    assert all(isinstance(e, Entity) for e in found)
    for e in found:  # spans keep the input's casing although the model saw lowercased words
        assert e.text == "ANGELA MERKEL besuchte PARIS."[e.start:e.end] and e.text.upper() == e.text
        assert 0 < e.score <= 1 and e.word_start < e.word_end
    many = tagger(TEXTS)
    assert len(many) == len(TEXTS) and many[1] == tagger(TEXTS[1])
    assert sum(map(len, many)) >= len(TEXTS), "the tiny model should find entities in its training text"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["cased", "unigram"])
def test_the_tagger_finds_the_same_entities_on_every_device(runs, kind, device):
    """The trained run, tagged on the CPU and on `device` (fp32 both): the same entities, scores within
    rounding. A long text (~200 pieces, several windows) goes through the window stitching too."""
    on_cpu = predict.load(runs[kind], "cpu", precision="fp32")
    there = predict.load(runs[kind], device, precision="fp32")
    want, got = on_cpu([*TEXTS, LONG]), there([*TEXTS, LONG])
    strip = lambda found: [[(e.type, e.start, e.end, e.word_start, e.word_end) for e in f] for f in found]
    assert strip(got) == strip(want) and sum(map(len, want)) > 0
    scores = [(a.score, b.score) for f, g in zip(want, got) for a, b in zip(f, g)]
    assert max(abs(a - b) for a, b in scores) < 1e-4


def test_predict_json_lines(runs, capsys):
    assert predict.main(["--model", str(runs["cased"]), "--json", *TEXTS]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == TEXTS
    tagger = minibert_ner.load(runs["cased"])
    for line in lines:
        assert [Entity(**e) for e in line["entities"]] == tagger(line["text"])
        for e in line["entities"]:
            assert line["text"][e["start"]:e["end"]] == e["text"]


def test_from_pretrained_reads_do_lower_case(runs):
    assert WordPieceTokenizer.from_pretrained(runs["uncased"] / "best").lowercase
    assert not WordPieceTokenizer.from_pretrained(runs["cased"] / "best").lowercase


@pytest.mark.parametrize("kind", ["cased", "uncased", "unigram"])
def test_transformers_reads_the_checkpoint_right(runs, kind):
    transformers = pytest.importorskip("transformers")
    best = runs[kind] / "best"
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(best))
    hf_model = transformers.AutoModelForTokenClassification.from_pretrained(str(best)).eval()
    tagger = minibert_ner.load(runs[kind])
    assert hf_tok.model_max_length == 64
    assert getattr(hf_tok, "do_lower_case", False) == (kind == "uncased")
    # short texts, end to end through transformers: its tokenizer, its model, first piece of each word
    words = [tagger.tok.words_and_spans(t)[0] for t in TEXTS]
    ours, _ = tagger.tag_words(words)
    for w, tags in zip(words, ours):
        enc = hf_tok(w, is_split_into_words=True, return_tensors="pt")
        assert enc["input_ids"][0].tolist() == [hf_tok.cls_token_id, *tagger.tok.encode_words(w)[0],
                                                hf_tok.sep_token_id]
        with torch.no_grad():
            labels = hf_model(**enc).logits[0].argmax(-1).tolist()
        word_ids, theirs = enc.word_ids(), {}
        for position, word in enumerate(word_ids):
            if word is not None and word not in theirs:
                theirs[word] = hf_model.config.id2label[labels[position]]
        assert [theirs[i] for i in range(len(w))] == tags
    # a text longer than the positions: our windows, scored by transformers' model, give our tags
    long_words = tagger.tok.words_and_spans(LONG)[0]
    (long_tags,), _ = tagger.tag_words([long_words])

    class HFAsOurs(torch.nn.Module):  # transformers' model behind predict_windows' interface
        labels = tagger.model.labels

        def forward(self, input_ids, attention_mask, prefix=None):
            return hf_model(input_ids=input_ids, attention_mask=attention_mask).logits
    swapped = predict.Tagger(HFAsOurs(), tagger.tok, tagger.how, tagger.max_len, tagger.overlap)
    assert swapped.tag_words([long_words])[0][0] == long_tags
    # and transformers' own pipeline copes with the long text (windows of model_max_length)
    nlp = transformers.pipeline("token-classification", model=hf_model, tokenizer=hf_tok,
                                aggregation_strategy="first", stride=16)
    assert isinstance(nlp(LONG), list)
    assert sum(t != "O" for t in long_tags) >= 10  # not a vacuous comparison
    for text in TEXTS:  # short texts: the same entities, types and character spans
        theirs = [(e["entity_group"], e["start"], e["end"]) for e in nlp(text)]
        assert theirs == [(e.type, e.start, e.end) for e in tagger(text)], text


def corrupt(folder, how):
    """Break a checkpoint folder in one way (issue: each was loaded silently or gave a traceback)."""
    from minibert_ner.weights import read_tensors, save_safetensors
    tensors = read_tensors(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    if how == "vocab 60 lines short":
        lines = (folder / "vocab.txt").read_text().splitlines()
        (folder / "vocab.txt").write_text("\n".join(lines[:-60]) + "\n")
    elif how == "no classifier":
        del tensors["classifier.weight"], tensors["classifier.bias"]
    elif how == "id2label longer than the classifier":
        config["id2label"][str(len(config["id2label"]))] = "I-EXTRA"
    elif how == "integer classifier":
        tensors["classifier.weight"] = tensors["classifier.weight"].to(torch.int32)
    elif how == "NaN in the encoder":
        tensors["bert.encoder.layer.0.output.dense.weight"][0, 0] = float("nan")
    elif how == "config with other layers":
        config["num_hidden_layers"] = 3
    save_safetensors(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("how", ["vocab 60 lines short", "no classifier", "id2label longer than the classifier",
                                 "integer classifier", "NaN in the encoder", "config with other layers"])
def test_a_broken_checkpoint_is_one_clear_message(runs, tmp_path, capsys, how):
    import shutil
    folder = tmp_path / "best"
    shutil.copytree(runs["cased"] / "best", folder)
    assert predict.main(["--model", str(folder), "Anna"]) == 0  # intact: loads
    capsys.readouterr()
    corrupt(folder, how)
    assert predict.main(["--model", str(folder), "Anna"]) == 2, how
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and str(folder) in err, err


def test_a_model_trained_with_the_content_rule_is_read_at_the_same_pieces(tmp_path, capsys):
    """--label-piece content moves a word's tag off a bare '▁'; predict must read it there too, or the
    tags would come from pieces the model never trained."""
    model = write_tiny_unigram_model(tmp_path / "sp")
    out = run(tmp_path, "content", model=str(model), label_piece="content", epochs=1)
    tagger = minibert_ner.load(out)
    assert tagger.skip_id == tagger.tok.metaspace_id is not None
    words = ["Paris", "."]
    windows = predict.encode_sentences([predict.Sentence(words, [], "xx")], tagger.tok, {}, {"xx": 0},
                                       predict.Windowing(skip_id=tagger.skip_id))
    pieces = tagger.tok.convert_ids_to_tokens(windows[0].input_ids)
    read_at = [p for p, scored in zip(pieces, windows[0].scored) if scored]
    assert "▁" in pieces and "▁" not in read_at and len(read_at) == len(words)


@pytest.mark.parametrize("bad", [None, 3, b"Paris", ["Paris", None], [["Angela", "Merkel"]]])
def test_the_python_api_refuses_what_is_no_text_in_one_sentence(runs, bad):
    tagger = minibert_ner.load(runs["cased"])
    with pytest.raises(TypeError, match="a tagger takes a text") as error:
        tagger(bad)
    assert "\n" not in str(error.value)
    if bad == [["Angela", "Merkel"]]:
        assert "tag_words" in str(error.value)
    with pytest.raises(TypeError, match="tag_words expects"):
        tagger.tag_words(["Angela Merkel"])


@pytest.mark.parametrize("how", ["config not JSON", "config a list", "no id2label", "id2label with a gap",
                                 "id2label not IOB", "heads do not divide", "unknown activation",
                                 "a string hidden size", "F64 classifier bias 1e300", "Latin-1 vocab.txt"])
def test_a_malformed_model_folder_is_one_line(runs, tmp_path, capsys, how):
    """Each used to end in a traceback or, for the huge bias, in a model that silently tags nothing."""
    import shutil
    from minibert_ner.weights import read_tensors, save_safetensors
    folder = tmp_path / "best"
    shutil.copytree(runs["cased"] / "best", folder)
    config = json.loads((folder / "config.json").read_text())
    text = None
    if how == "config not JSON":
        text = "{not json"
    elif how == "config a list":
        text = "[1, 2]"
    elif how == "no id2label":
        del config["id2label"]
    elif how == "id2label with a gap":
        config["id2label"] = {"0": "O", "2": "B-PER"}
    elif how == "id2label not IOB":
        config["id2label"]["1"] = "PERSON"
    elif how == "heads do not divide":
        config["num_attention_heads"] = 3
    elif how == "unknown activation":
        config["hidden_act"] = "swishy"
    elif how == "a string hidden size":
        config["hidden_size"] = "32"
    elif how == "F64 classifier bias 1e300":
        tensors = read_tensors(folder / "model.safetensors")
        tensors["classifier.bias"] = tensors["classifier.bias"].double() * 0 + 1e300
        save_safetensors(tensors, folder / "model.safetensors")
    else:
        (folder / "vocab.txt").write_bytes((folder / "vocab.txt").read_bytes() + "Köln\n".encode("latin-1"))
    (folder / "config.json").write_text(text if text is not None else json.dumps(config))
    assert predict.main(["--model", str(folder), "Angela Merkel besuchte Paris ."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("how", ["tokenizer.json not JSON", "tokenizer.json a BPE model", "tokenizer_config.json not JSON",
                                 "aux_heads.safetensors cut short"])
def test_a_malformed_sentencepiece_folder_file_is_one_line(runs, tmp_path, capsys, how):
    import shutil
    folder = tmp_path / "best"
    shutil.copytree(runs["unigram"] / "best", folder)
    if how == "tokenizer.json not JSON":
        (folder / "tokenizer.json").write_text("{cut")
    elif how == "tokenizer.json a BPE model":
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}, "merges": []}}))
    elif how == "tokenizer_config.json not JSON":
        (folder / "tokenizer_config.json").write_text("{cut")
    else:
        (folder / "aux_heads.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    code = predict.main(["--model", str(folder), "Angela Merkel besuchte Paris ."])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 or \
        (how == "tokenizer_config.json not JSON" and code == 0), err  # predict does not read that file


def test_predict_reads_one_token_per_line_and_reports_progress(runs, tmp_path, capsys, monkeypatch):
    words = [s.words for s in read_conll(SAMPLE / "en/test.txt")][:30]
    plain = tmp_path / "tokens.txt"
    plain.write_text("".join("".join(w + "\n" for w in sentence) + "\n" for sentence in words), encoding="utf-8")
    monkeypatch.setattr(predict.time, "time", iter(range(0, 10**6, 11)).__next__)  # 11 s between calls
    assert predict.main(["--model", str(runs["cased"]), "--conll", str(plain), "--out", str(tmp_path / "p.txt")]) == 0
    lines = [l.split() for l in (tmp_path / "p.txt").read_text().splitlines() if l]
    assert len(lines) == sum(map(len, words)) and all(len(l) == 2 for l in lines)  # token, predicted tag
    assert [l[0] for l in lines] == [w for s in words for w in s]
    err = capsys.readouterr().err  # the clock moves 11 s a call: every batch prints its progress line
    assert f"{plain}: " in err and " windows, " in err and "ETA" in err
