"""Masked-LM pretraining end to end on the bundled sample with a tiny BERT (seconds per run): the folder
it writes loads in train (cloze head included) and in transformers, a killed run resumes bit for bit,
and --head-only fits a head without touching the encoder."""
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from minibert_ner import train as train_module
from minibert_ner.cli import configs_from_argv
from minibert_ner.config import check_config
from minibert_ner.heads import NERModel
from minibert_ner.tools.pretrain import PretrainConfig, build_model, main, pretrain
from minibert_ner.runs import RunError, read_log
from minibert_ner.tokenizer import WordPieceTokenizer
from minibert_ner.train import ConfigError
from minibert_ner.weights import init_cloze_head, load_bert, read_mlm_head, read_tensors, save_bert
from minibert_ner.windows import collate, encode_sentences
from minibert_ner.data import read_text

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def tiny(out, **kw):
    """Five languages of the sample, a 2-layer BERT of width 32: a few seconds per run."""
    base = PretrainConfig(out=str(out), data=str(SAMPLE), steps=6, layers=2, hidden=32, heads=2, intermediate=64,
                          vocab_size=1000, batch_size=8, lr=3e-3, precision="fp32", quiet=True)
    return replace(base, **kw)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "pocket"
    pretrain(tiny(out))
    return out


def test_the_folder_is_a_cased_bert_for_masked_lm(pretrained):
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "log.jsonl", "mlm.svg",
                 "last/trainer_state.pt"):
        assert (pretrained / name).is_file(), name
    keys = set(read_tensors(pretrained / "model.safetensors"))
    assert {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias",
            "cls.predictions.transform.dense.weight"} <= keys
    assert all(k.startswith(("bert.", "cls.predictions.")) for k in keys)
    assert '"do_lower_case": false' in (pretrained / "tokenizer_config.json").read_text()
    log = read_log(pretrained)
    assert [r["step"] for r in log] == list(range(7))  # step 0 (untrained) then every step (6 < 20 evaluations)
    assert set(log[-1]["heldout"]) == {"de", "en", "es", "nl", "ru"}
    assert log[-1]["heldout"]["en"]["loss"] < log[0]["heldout"]["en"]["loss"]
    assert log[-1]["tokens_per_s"] > 0 and "eta_s" in log[-1]


def test_train_loads_it_and_the_cloze_head_starts_from_the_pretrained_head(pretrained, tmp_path):
    args = ["--model", str(pretrained), "--aux", "CL", "--train", f"en={SAMPLE / 'en/train.txt'}", "--unlabeled",
            f"de={SAMPLE / 'unlabeled/de.txt'}", "--epochs", "1", "--max-sentences", "20", "--out",
            str(tmp_path / "ner"), "--quiet"]
    (cfg,) = configs_from_argv(args)
    tok = WordPieceTokenizer.from_file(pretrained / "vocab.txt")
    model = train_module.build_model(cfg, pretrained, tok, ["O", "B-PER", "I-PER"], ["de", "en"], print)
    head = read_mlm_head(pretrained)
    assert torch.equal(model.cls.predictions.bias, head["bias"])
    assert torch.equal(model.cls.predictions.transform.dense.weight, head["transform.dense.weight"])
    train_module.train(cfg)  # and a whole run goes through
    assert (tmp_path / "ner" / "best" / "model.safetensors").is_file()


def test_cloze_head_from_another_folder_for_a_model_without_one(pretrained, tmp_path):
    # the encoder alone (as multilingual-e5-small or MiniLM ship), and the head from `pretrained`
    headless = tmp_path / "headless"
    save_bert(load_bert(pretrained, verbose=False), headless)
    shutil.copy(pretrained / "vocab.txt", headless)
    assert read_mlm_head(headless) == {}
    tok = WordPieceTokenizer.from_file(pretrained / "vocab.txt")
    args = ["--model", str(headless), "--aux", "CL", "--train", f"en={SAMPLE / 'en/train.txt'}", "--unlabeled",
            f"de={SAMPLE / 'unlabeled/de.txt'}", "--out", str(tmp_path / "ner"), "--quiet"]
    build = lambda *extra: train_module.build_model(configs_from_argv(args + list(extra))[0], headless, tok,
                                                    ["O", "B-PER", "I-PER"], ["de", "en"], print)
    random_head = build()
    head = read_mlm_head(pretrained)
    assert not torch.equal(random_head.cls.predictions.bias, head["bias"])
    model = build("--cloze-head", str(pretrained))
    assert torch.equal(model.cls.predictions.bias, head["bias"])
    assert torch.equal(model.cls.predictions.transform.dense.weight, head["transform.dense.weight"])
    # what cannot work is one clear error each
    with pytest.raises(ConfigError, match="has no masked-LM head"):
        build("--cloze-head", str(headless))
    with pytest.raises(ConfigError, match="expected a model folder"):  # before any data is read
        check_config(configs_from_argv(args + ["--cloze-head", str(tmp_path / "nowhere")])[0])
    other = tmp_path / "other-vocab"
    shutil.copytree(pretrained, other, ignore=shutil.ignore_patterns("last"))
    (other / "vocab.txt").write_text((pretrained / "vocab.txt").read_text().replace("[UNK]", "[UNKNOWN]"))
    with pytest.raises(ConfigError, match="is not --model's"):
        build("--cloze-head", str(other))
    (no_cloze,) = configs_from_argv(args[:2] + ["--train", f"en={SAMPLE / 'en/train.txt'}", "--out",
                                                str(tmp_path / "x"), "--cloze-head", str(pretrained)])
    with pytest.raises(ConfigError, match="--cloze-head starts the cloze head of --aux CL or PC"):
        check_config(no_cloze)


def test_transformers_loads_it_with_the_same_logits(pretrained):
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertForMaskedLM.from_pretrained(str(pretrained)).eval()
    bert = load_bert(pretrained, verbose=False)
    ours = NERModel(bert, ["O"], cloze=True).eval()
    init_cloze_head(ours, read_mlm_head(pretrained))
    tok = WordPieceTokenizer.from_file(pretrained / "vocab.txt")
    sentences = read_text(SAMPLE / "unlabeled/de.txt", "de")[:8]
    batch = collate(encode_sentences(sentences, tok, {}, {"de": 0}), tok.pad_token_id)
    with torch.no_grad():
        want = ref(batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, T, V)
        h = ours.encode(batch.input_ids, batch.attention_mask)
        got = ours.cls.predictions(h, bert.embeddings.word_embeddings.weight)
    real = batch.attention_mask.bool()
    diff = (want[real] - got[real]).abs().max().item()
    assert diff < 1e-4, f"max |logit difference| {diff}"
    fill = transformers.pipeline("fill-mask", model=str(pretrained))
    assert fill.tokenizer.tokenize("Köln liegt am Rhein")[0].startswith("K")  # cased: nothing lowercased
    assert len(fill("Köln liegt am [MASK] .", top_k=3)) == 3


def test_a_killed_run_resumes_to_the_same_weights_and_log(tmp_path):
    full = tiny(tmp_path / "full", steps=5)
    pretrain(full)
    part = replace(full, out=str(tmp_path / "part"), stop_after=2)
    pretrain(part)
    assert read_log(part.out)[-1]["step"] == 2
    # killed between the two renames of the next checkpoint: last.old holds it, last.tmp is half written
    out = Path(part.out)
    (out / "last").rename(out / "last.old")
    (out / "last.tmp").mkdir()
    (out / "model.safetensors.tmp").write_text("half")
    pretrain(replace(part, stop_after=0, resume=True))
    a, b = read_tensors(Path(full.out) / "model.safetensors"), read_tensors(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = {"seconds", "tokens_per_s", "eta_s", "eval_s"}
    strip = lambda log: [{k: v for k, v in r.items() if k not in timing} for r in log]
    assert strip(read_log(full.out)) == strip(read_log(out))
    assert not list(out.glob("*.tmp")) and not (out / "last.old").exists()


def test_resume_refuses_other_settings_and_a_folder_is_never_reused_silently(pretrained):
    with pytest.raises(RunError, match="lr: saved 0.003, now 0.1"):
        pretrain(tiny(pretrained, lr=0.1, resume=True))
    with pytest.raises(RunError, match="already holds a run"):
        pretrain(tiny(pretrained))


def test_a_model_folder_that_is_not_a_run_is_never_overwritten(pretrained, tmp_path):
    model = tmp_path / "model"  # a plain Hugging Face folder, e.g. the one --from reads
    shutil.copytree(pretrained, model, ignore=shutil.ignore_patterns("log.jsonl", "last", "*.svg"))
    weights = (model / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match="holds a model that is not a pretraining run"):
        pretrain(tiny(model, init_from=str(model), head_only=True))
    assert (model / "model.safetensors").read_bytes() == weights


def test_head_only_keeps_the_encoder_and_lowers_the_mlm_loss(pretrained, tmp_path):
    out = tmp_path / "head"
    pretrain(tiny(out, init_from=str(pretrained), head_only=True, steps=20, lr=3e-2, eval_every=20))
    before, after = read_tensors(pretrained / "model.safetensors"), read_tensors(out / "model.safetensors")
    encoder = [k for k in before if k.startswith("bert.")]
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert not torch.equal(before["cls.predictions.bias"], after["cls.predictions.bias"])
    log = read_log(out)
    mean_loss = lambda r: sum(s["loss"] for s in r["heldout"].values()) / len(r["heldout"])
    assert mean_loss(log[-1]) < mean_loss(log[0]) - 0.1


def test_settings_that_cannot_work_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--from"):
        pretrain(tiny(tmp_path / "a", head_only=True))
    with pytest.raises(ConfigError, match="leaves room for"):
        pretrain(tiny(tmp_path / "b", steps=0, minutes=0.001))
    assert main(["--out", str(tmp_path / "c"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no training files" in err and err.count("\n") == 1


def test_lr_0_writes_the_random_initialisation_the_zero_shot_baseline(tmp_path):
    """`--steps 1 --lr 0` saves the very weights pretraining starts from (same seed, same vocabulary):
    the same architecture at random initialisation, for comparing what pretraining buys."""
    out = tmp_path / "random"
    pretrain(tiny(out, steps=1, lr=0.0))
    tok = WordPieceTokenizer.from_file(out / "vocab.txt")
    torch.manual_seed(1)
    fresh = build_model(tiny(out), tok, None)
    saved = read_tensors(out / "model.safetensors")
    assert all(torch.equal(v, saved[f"bert.{k}"]) for k, v in fresh.bert.state_dict().items())


def test_from_a_sentencepiece_model_keeps_its_unigram_vocabulary(unigram_model, tmp_path):
    """--from a folder with a Unigram tokenizer.json (multilingual-e5-small's kind): the pretrained
    folder carries the same tokenizer.json and nothing WordPiece."""
    from minibert_ner.unigram import UnigramTokenizer, load_tokenizer
    out = tmp_path / "sp"
    pretrain(tiny(out, init_from=str(unigram_model), steps=2))
    tok = load_tokenizer(out)
    assert isinstance(tok, UnigramTokenizer) and not (out / "vocab.txt").exists()
    assert tok.inv_vocab == load_tokenizer(unigram_model).inv_vocab
    assert load_bert(out, verbose=False).config.vocab_size == load_bert(unigram_model, verbose=False).config.vocab_size


def test_reinit_keeps_the_shape_and_tokenizer_and_draws_new_weights(unigram_model, tmp_path):
    """--from MODEL --reinit --steps 1 --lr 0: the random-init control of a pretrained model (issue 31's
    twin of multilingual-e5-small): its config, its Unigram tokenizer, BERT's initialisation from the
    seed, none of its weights; a resumed run does not draw them again."""
    from minibert_ner.model import BertConfig, BertModel
    from minibert_ner.unigram import load_tokenizer
    out = tmp_path / "twin"
    pretrain(tiny(out, init_from=str(unigram_model), reinit=True, steps=1, lr=0.0))
    original, twin = read_tensors(unigram_model / "model.safetensors"), read_tensors(out / "model.safetensors")
    assert load_bert(out, verbose=False).config == load_bert(unigram_model, verbose=False).config
    assert load_tokenizer(out).inv_vocab == load_tokenizer(unigram_model).inv_vocab
    matrices = [k for k in twin if k.startswith("bert.") and twin[k].ndim == 2]
    for k in matrices:
        name = k.removeprefix("bert.")
        assert not torch.equal(twin[k], original.get(k, original.get(name))), k
    torch.manual_seed(1)  # --seed 1: the weights BertModel draws for this config
    fresh = BertModel(BertConfig.from_json(unigram_model / "config.json"))
    assert all(torch.equal(v, twin[f"bert.{k}"]) for k, v in fresh.state_dict().items())
    with pytest.raises(ConfigError, match="--reinit"):
        pretrain(tiny(tmp_path / "x", reinit=True))  # nothing to take the shape from
    # stopped after 2 of 4 steps and resumed: the weights of 4 straight steps (last/ is read, not redrawn)
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    settings = dict(init_from=str(unigram_model), reinit=True, steps=4, eval_every=2)
    pretrain(tiny(straight, **settings))
    pretrain(tiny(halves, **settings, stop_after=2))
    pretrain(tiny(halves, **settings, resume=True))
    a, b = read_tensors(straight / "model.safetensors"), read_tensors(halves / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
