"""The training loop end to end on the bundled sample, with a tiny random BERT (seconds per run)."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import minibert_ner.device as device_module
import minibert_ner.train as train_module
from minibert_ner.cli import configs_from_argv
from minibert_ner.data import read_conll
from minibert_ner.heads import NERModel, ner_loss
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.runs import load_ner_model, read_log
from minibert_ner.tokenizer import WordPieceTokenizer, learn_vocab, train_vocab
from minibert_ner.predict import Inference, evaluate
from minibert_ner.device import resolve_precision
from minibert_ner.train import ConfigError, TrainConfig, aux_losses, get_lr, make_optimizer, train
from minibert_ner.weights import read_tensors
from minibert_ner.windows import Windowing, collate, encode_sentences

from conftest import DEVICES

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def config(tmp_path, **kw):
    """Two languages, 40 sentences each, a 2-layer BERT: a whole run takes a few seconds. fp32, not
    auto (bf16 on CPUs with native bf16): several tests compare two runs' weights to 1e-5."""
    base = TrainConfig(train=[("en", str(SAMPLE / "en/train.txt")), ("de", str(SAMPLE / "de/train.txt"))],
                       dev=[("en", str(SAMPLE / "en/dev.txt")), ("de", str(SAMPLE / "de/dev.txt"))],
                       test=[("en", str(SAMPLE / "en/test.txt"))], max_sentences=40, epochs=2, lr=1e-3,
                       batch_size=8, out=str(tmp_path / "run"), tiny=TINY, quiet=True, eval_batch_size=64,
                       precision="fp32", threads=1)  # one thread: sums in the same order in every run
    return replace(base, **kw)


def final_weights(out):
    return read_tensors(Path(out) / "last" / "model.safetensors")


history = read_log


def test_get_lr_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup=0.1)
    lrs = [get_lr(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10])) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1 / 90)


def test_tiny_batch_is_overfit_to_f1_1(tmp_path):
    sentences = read_conll(SAMPLE / "en/train.txt", scheme="IOB1")[:8]
    vocab = train_vocab([w for s in sentences for w in s.words], 200, tmp_path / "vocab.txt")
    tok = WordPieceTokenizer.from_file(vocab)
    labels = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER"]
    torch.manual_seed(0)
    model = NERModel(BertModel(BertConfig(vocab_size=len(tok), max_position_embeddings=64, **TINY)), labels)
    windows = encode_sentences(sentences, tok, {l: i for i, l in enumerate(labels)}, {"en": 0})
    batch = collate(windows, tok.pad_token_id)
    opt = make_optimizer(model, TrainConfig(lr=3e-3))
    model.train()
    for _ in range(150):
        ner_loss(model(batch.input_ids, batch.attention_mask), batch.labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    scores, _ = evaluate(model, sentences, windows, Inference(tok.pad_token_id))
    assert scores.f1 == 1.0, f"F1 {scores.f1}"


def test_loss_decreases_and_run_folder_is_complete(tmp_path):
    cfg = config(tmp_path, epochs=3)
    result = train(cfg)
    h = history(cfg.out)
    assert [r["epoch"] for r in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert set(h[0]["dev"]) == {"en", "de"}
    run = Path(cfg.out)
    for f in ("best/model.safetensors", "best/config.json", "best/vocab.txt", "last/trainer_state.pt",
              "log.jsonl", "dev_f1.svg"):
        assert (run / f).exists(), f
    assert "<polyline" in (run / "dev_f1.svg").read_text()
    assert result["best_epoch"] == max(h, key=lambda r: r["selection_f1"])["epoch"]
    assert set(result["test"]) == {"en"}


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full = config(tmp_path / "a", epochs=3)
    train(full)
    part = config(tmp_path / "b", epochs=3, stop_after=1)
    assert train(part)["stopped"]
    assert len(history(part.out)) == 1
    train(replace(part, stop_after=0, resume=True))
    a, b = final_weights(full.out), final_weights(part.out)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(history(full.out)) == strip(history(part.out))


def test_gradient_accumulation_gives_the_same_update(tmp_path):
    no_dropout = dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    one = config(tmp_path / "one", epochs=1, tiny=no_dropout, test=[])
    four = config(tmp_path / "four", epochs=1, tiny=no_dropout, test=[], grad_accum=4)
    train(one)
    train(four)
    a, b = final_weights(one.out), final_weights(four.out)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"max abs weight difference {worst:.2e}"


def test_frozen_prefix_cache_changes_nothing(tmp_path):
    cached = config(tmp_path / "c", frz=1, epochs=2, test=[])
    plain = config(tmp_path / "p", frz=1, epochs=2, test=[], cache_frozen=False)
    train(cached)
    train(plain)
    a, b = final_weights(cached.out), final_weights(plain.out)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"max abs weight difference {worst:.2e}"
    scores = lambda out: [v for r in history(out) for lang in sorted(r["dev"]) for v in r["dev"][lang].values()]
    assert scores(cached.out) == pytest.approx(scores(plain.out))  # every dev P/R/F1 of every epoch
    # and the frozen part really is frozen: embeddings identical to the randomly initialised start
    assert torch.equal(a["bert.embeddings.word_embeddings.weight"], b["bert.embeddings.word_embeddings.weight"])


def test_frozen_part_runs_only_in_the_first_epoch(tmp_path, monkeypatch):
    """With the cache, training windows and dev sets alike pass through the frozen layers once:
    a 3-epoch run computes the frozen prefix exactly as often as a 1-epoch run."""
    calls = []
    real = NERModel.frozen_prefix
    monkeypatch.setattr(NERModel, "frozen_prefix", lambda self, *a: calls.append(1) or real(self, *a))
    counts = {}
    for epochs in (1, 3):
        calls.clear()
        train(config(tmp_path / f"e{epochs}", frz=1, epochs=epochs, test=[]))
        counts[epochs] = len(calls)
    assert counts[1] > 0 and counts[3] == counts[1], counts
    calls.clear()
    train(config(tmp_path / "off", frz=1, epochs=3, test=[], cache_frozen=False))
    assert len(calls) == 3 * counts[1]  # without it: every epoch, every batch


def test_bf16_autocast_on_cpu(tmp_path):
    cfg = config(tmp_path, precision="bf16", epochs=1, test=[])
    train(cfg)
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history(cfg.out))


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native):
    monkeypatch.setattr(device_module, "native_bf16", lambda device: native)
    assert resolve_precision("auto", torch.device("cpu")) == \
        (("bf16", torch.bfloat16) if native else ("fp32", torch.float32))
    assert resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"  # asked: kept


def test_threads_option_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    want = 2 if before == 1 else 1  # differs from the current setting, so the test can fail
    (cfg,) = configs_from_argv(["--train", f"en={SAMPLE / 'en/train.txt'}", "--threads", str(want),
                                "--out", str(tmp_path)])
    try:
        train(replace(config(tmp_path), threads=cfg.threads, epochs=1, test=[]))
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision(tmp_path, precision):
    cfg = config(tmp_path, precision=precision, device="cuda", epochs=2, test=[])
    train(cfg)
    h = history(cfg.out)
    assert h[-1]["train_loss"] < h[0]["train_loss"]


@pytest.mark.parametrize("device", DEVICES)
def test_three_training_steps_on_a_device_equal_the_cpus(device):
    """The step train() takes (packed forward, NER loss, backward, clip, fused AdamW), in fp32 without
    dropout, on the CPU and on `device` from the same weights and batches: the same weights after."""
    sentences = read_conll(SAMPLE / "en/train.txt")[:64]
    tok = WordPieceTokenizer({t: i for i, t in enumerate(learn_vocab([w for s in sentences for w in s.words], 300))})
    labels = sorted({t for s in sentences for t in s.tags})
    windows = encode_sentences(sentences, tok, {l: i for i, l in enumerate(labels)}, {"en": 0}, Windowing(32))
    batches = [collate(windows[i:i + 16], tok.pad_token_id, list(range(i, i + 16))) for i in (0, 16, 32)]
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, **TINY)
    models = {"cpu": NERModel(BertModel(config), labels)}
    models[device] = NERModel(BertModel(config), labels)
    models[device].load_state_dict(models["cpu"].state_dict())
    before = {k: v.clone() for k, v in models["cpu"].state_dict().items()}
    for where, model in models.items():
        model.to(where).train()
        optimizer = make_optimizer(model, TrainConfig(lr=1e-3))
        scaler = torch.amp.GradScaler(where, enabled=False)
        for batch in batches:
            batch = batch.to(where)
            ner_loss(model(batch.input_ids, batch.attention_mask), batch.labels).backward()
            train_module.optimizer_step(optimizer, scaler, 1.0)
    for (name, a), b in zip(models["cpu"].named_parameters(), models[device].parameters()):
        assert (a - b.cpu()).abs().max().item() < 1e-5, name
    assert all((before[k] != v).any() for k, v in models["cpu"].state_dict().items()), "a tensor did not train"


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        train(config(tmp_path, precision="fp16", device="cpu"))


def test_zero_shot_leaves_out_the_target_and_selects_on_its_dev(tmp_path):
    out = tmp_path / "zs"
    (cfg,) = configs_from_argv(["--target", "de", "--out", str(out), "--quiet"])
    assert "de" not in {lang for lang, _ in cfg.train} and {"en", "es", "nl", "ru"} <= {l for l, _ in cfg.train}
    cfg = replace(cfg, max_sentences=30, epochs=1, tiny=TINY, test=[])
    train(cfg)
    (record,) = history(out)
    assert record["selection_f1"] == record["dev"]["de"]["f1"]


def target_batch(tmp_path, aux, **kw):
    sentences = read_conll(SAMPLE / "nl/train.txt", scheme="IOB1")[:16]
    unlabeled = [replace(s, tags=[]) for s in sentences]
    vocab = train_vocab([w for s in sentences for w in s.words], 150, tmp_path / "vocab.txt")  # small: many words split
    tok = WordPieceTokenizer.from_file(vocab)
    labels = ["O", "I-PER"]
    model = NERModel(BertModel(BertConfig(vocab_size=len(tok), max_position_embeddings=64, **TINY)), labels,
                     languages=["en", "nl"], cloze=True)
    # short windows, so that some start in the middle of a word
    windows = encode_sentences(unlabeled, tok, {l: i for i, l in enumerate(labels)}, {"en": 0, "nl": 1},
                               Windowing(max_len=12, overlap=4))
    return model, tok, collate(windows, tok.pad_token_id), TrainConfig(aux=aux, **kw)


def record_targets(model):
    seen = []
    original = model.cloze_logits

    def spy(h, targets):
        seen.append(targets)
        return original(h, targets)
    model.cloze_logits = spy
    return seen


def test_li_is_computed_on_the_target_text_language(tmp_path):
    model, tok, batch, cfg = target_batch(tmp_path, ["LI"])
    assert batch.lang_ids.eq(1).all()  # the unlabeled text is Dutch
    losses = aux_losses(model, batch, cfg, tok, torch.Generator())
    assert set(losses) == {"li"}
    h = model.encode(batch.input_ids, batch.attention_mask)
    # deterministic comparison in eval mode
    model.eval()
    want = torch.nn.functional.cross_entropy(model.language_logits(model.encode(batch.input_ids, batch.attention_mask)),
                                             torch.ones(len(batch.lang_ids), dtype=torch.long))
    assert aux_losses(model, batch, cfg, tok, torch.Generator())["li"].item() == pytest.approx(want.item(), rel=1e-5)
    assert h.shape[0] == len(batch.lang_ids)


def test_cl_masks_about_15_percent_of_real_pieces(tmp_path):
    model, tok, batch, cfg = target_batch(tmp_path, ["CL", "LI"])
    seen = record_targets(model)
    losses = aux_losses(model, batch, cfg, tok, torch.Generator().manual_seed(0))
    assert set(losses) == {"cloze", "li"}
    (targets,) = seen
    eligible = batch.attention_mask.bool() & (batch.input_ids != tok.cls_token_id) & (batch.input_ids != tok.sep_token_id)
    rate = (targets != -100).sum().item() / eligible.sum().item()
    assert 0.08 < rate < 0.25, rate
    assert ((targets != -100) <= eligible).all()
    assert torch.equal(targets[targets != -100], batch.input_ids[targets != -100])


def test_pc_masks_exactly_the_predicted_entity_pieces(tmp_path):
    model, tok, batch, cfg = target_batch(tmp_path, ["PC"])
    seen = record_targets(model)
    with torch.no_grad():  # make the NER head call every word an entity, then nothing
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    aux_losses(model, batch, cfg, tok, torch.Generator())
    # every piece of every word whose first piece is in the row (a tail cut off by the window
    # edge belongs to a word predicted in the previous window)
    expected = torch.stack([torch.isin(w, w[f]) & (w >= 0) for w, f in zip(batch.word_ids, batch.is_first)])
    assert (batch.word_ids[~expected] >= 0).any(), "the sample should include a window starting mid-word"
    assert torch.equal(seen[-1] != -100, expected)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([5.0, 0.0]))
    losses = aux_losses(model, batch, cfg, tok, torch.Generator())
    assert (seen[-1] == -100).all() and losses["cloze"].item() == 0.0


def test_several_seeds_report_mean_and_sd(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_module, "TrainConfig", TrainConfig)
    argv = ["--train", f"en={SAMPLE / 'en/train.txt'}", "--dev", f"en={SAMPLE / 'en/dev.txt'}",
            "--test", f"en={SAMPLE / 'en/test.txt'}", "--max-sentences", "30", "--epochs", "1",
            "--seed", "1", "2", "--out", str(tmp_path / "seeds"), "--quiet", "--lr", "1e-3"]
    real = train_module.train
    monkeypatch.setattr(train_module, "train", lambda c: real(replace(c, tiny=TINY)))
    assert train_module.main(argv) == 0
    out = capsys.readouterr().out
    assert "over 2 seeds (1, 2)" in out and "test F1 en" in out and "±" in out
    assert (tmp_path / "seeds/seed-1/best").is_dir() and (tmp_path / "seeds/seed-2/best").is_dir()


def test_persistent_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = config(tmp_path, epochs=2, test=[])
    calls = {"n": 0}
    real = train_module.ner_loss

    def poisoned(logits, labels, **kw):
        calls["n"] += 1
        loss = real(logits, labels, **kw)
        return loss * float("nan") if calls["n"] > 10 else loss  # epoch 1 has 10 steps
    monkeypatch.setattr(train_module, "ner_loss", poisoned)
    with pytest.raises(FloatingPointError, match="NaN/inf for 10 steps in a row.*last good checkpoint"):
        train(cfg)
    assert len(history(cfg.out)) == 1
    model, _ = load_ner_model(Path(cfg.out) / "last")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_inputs_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(Exception, match="no config.json or model.safetensors in this folder"):
        train(config(tmp_path, model=str(tmp_path / "empty")))
    with pytest.raises(ConfigError, match="--dev file .*nope.txt does not exist"):
        configs_from_argv(["--train", str(SAMPLE / "en/train.txt"), "--dev", "en=nope.txt"])
    # a checkpoint trained on other labels cannot be resumed on this data
    cfg = config(tmp_path / "x", epochs=2, stop_after=1, test=[])
    train(cfg)
    bad = Path(cfg.out) / "last/config.json"
    c = json.loads(bad.read_text())
    c["id2label"]["1"], c["id2label"]["2"] = c["id2label"]["2"], c["id2label"]["1"]
    bad.write_text(json.dumps(c))
    with pytest.raises(ValueError, match="checkpoint labels .* differ from the data's"):
        train(replace(cfg, resume=True, stop_after=0))


def test_export_loads_in_transformers_and_predicts_the_same(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = config(tmp_path, epochs=1, test=[])
    train(cfg)
    ours, tok = load_ner_model(cfg.out)
    ref = transformers.BertForTokenClassification.from_pretrained(str(Path(cfg.out) / "best")).eval()
    assert ref.config.id2label == dict(enumerate(ours.labels))
    sentences = read_conll(SAMPLE / "de/test.txt")[:20]
    batch = collate(encode_sentences([replace(s, tags=[]) for s in sentences], tok, {}, {"de": 0}),
                    tok.pad_token_id)
    with torch.no_grad():
        want = ref(batch.input_ids, attention_mask=batch.attention_mask).logits.argmax(-1)
        got = ours.predict(batch.input_ids, batch.attention_mask)
    real = batch.attention_mask.bool()
    assert torch.equal(want[real], got[real])


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        configs_from_argv(["--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--train", "--dev", "--test", "--target", "--unlabeled", "--frz", "--aux",
                   "--lr", "--batch-size", "--epochs", "--max-len", "--overlap", "--mask-p", "--precision",
                   "--seed", "--resume"):
        assert option in text, option
    assert "#frz" in text and "zero-shot" in text


def test_recipe_paper_is_the_papers_letter():
    """The paper states lr, batch and epochs and says it follows Devlin et al.; --recipe paper drops
    everything else Devlin's recipe adds (an explicitly given option still wins)."""
    train = ["--train", f"en={SAMPLE / 'en/train.txt'}", "--out", "unused"]
    (devlin,) = configs_from_argv(train)
    (letter,) = configs_from_argv(train + ["--recipe", "paper"])
    assert (devlin.schedule, devlin.warmup, devlin.weight_decay, devlin.clip) == ("linear", 0.1, 0.01, 1.0)
    assert (letter.schedule, letter.warmup, letter.weight_decay, letter.clip, letter.precision) == \
        ("constant", 0.0, 0.0, 0.0, "fp32")
    assert (letter.lr, letter.batch_size, letter.epochs) == (devlin.lr, devlin.batch_size, devlin.epochs) == (5e-5, 32, 20)
    assert {get_lr(s, 100, letter) for s in range(100)} == {5e-5}
    (clipped,) = configs_from_argv(train + ["--recipe", "paper", "--clip", "2"])
    assert clipped.clip == 2.0


def language_id_accuracy(run_dir, langs):
    """Accuracy of a run's language-ID head (its last epoch: model selection looks at NER only) on
    held-out windows (the sample's dev files) of `langs`."""
    from minibert_ner.runs import checkpoint_labels, load_weights_into
    from minibert_ner.weights import load_bert
    best = Path(run_dir) / "last"
    languages = json.loads((best / "config.json").read_text())["minibert_ner"]["languages"]
    model = NERModel(load_bert(best, verbose=False), checkpoint_labels(best), languages).eval()
    load_weights_into(model, best)
    tok = WordPieceTokenizer.from_file(best / "vocab.txt")
    right = total = 0
    for lang in langs:
        sentences = [replace(s, tags=[]) for s in read_conll(SAMPLE / lang / "dev.txt", lang)]
        batch = collate(encode_sentences(sentences, tok, {}, {lang: languages.index(lang)}), tok.pad_token_id)
        with torch.no_grad():
            guess = model.language_logits(model.encode(batch.input_ids, batch.attention_mask)).argmax(-1)
        right += (guess == batch.lang_ids).sum().item()
        total += len(guess)
    return right / total, languages


@pytest.mark.slow
def test_language_id_learns_the_languages_when_source_windows_are_examples(tmp_path):
    """Zero-shot LI: with only the target text as LI examples (the paper's formula read literally,
    --li-on target) every example has the same label and the head learns a constant; with the
    labelled source windows as examples too (--li-on all, the default) it tells languages apart."""
    accuracy = {}
    for li_on in ("all", "target"):
        cfg = config(tmp_path / li_on, train=[(l, str(SAMPLE / l / "train.txt")) for l in ("en", "de", "es")],
                     dev=[("nl", str(SAMPLE / "nl/dev.txt"))], test=[], target=["nl"], aux=["LI"], li_on=li_on,
                     unlabeled=[("nl", str(SAMPLE / "unlabeled/nl.txt"))], max_sentences=80, epochs=10, lr=2e-3)
        train(cfg)
        accuracy[li_on], languages = language_id_accuracy(cfg.out, ["de", "en", "es", "nl"])
    assert languages == ["de", "en", "es", "nl"]
    majority = max(len(read_conll(SAMPLE / l / "dev.txt")) for l in languages) / \
        sum(len(read_conll(SAMPLE / l / "dev.txt")) for l in languages)
    assert accuracy["all"] > majority + 0.15, (accuracy, majority)  # measured 0.49 against 0.25
    assert accuracy["target"] <= majority + 0.05, (accuracy, majority)  # a constant: always "nl"


def test_a_reader_that_closes_the_pipe_is_not_an_error():
    # `python -m minibert_ner.predict ... | head`: head leaves, the next write fails with EPIPE. Every
    # command runs through run_command, which must end quietly then, not print "error: [Errno 32]".
    # It must not leave a descriptor open either: main() may run again in the same process.
    code = ("import os, sys\nfrom minibert_ner.cli import run_command\n"
            "fds = lambda: len(os.listdir('/proc/self/fd')) if os.path.isdir('/proc/self/fd') else 0\n"
            "before = fds()\n"
            "status = run_command(lambda: [print(f'line {i}') for i in range(200_000)] and 0)\n"
            "assert fds() == before, 'a descriptor left open'\n"
            "sys.exit(status)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parents[1])
    assert child.stdout.readline() == b"line 0\n"
    child.stdout.close()  # 2 MB to write, a 64 KB pipe: the child is still writing when it closes
    stderr = child.stderr.read().decode()
    assert child.wait() == 1
    assert stderr == ""


def test_head_lr_drives_the_heads_from_their_own_peak(tmp_path):
    cfg = config(tmp_path, lr=1e-3, head_lr=2e-2, epochs=1)
    torch.manual_seed(0)
    model = NERModel(BertModel(BertConfig(vocab_size=50, max_position_embeddings=64, **TINY)), ["O", "I-PER"])
    optimizer = make_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [{names[id(p)].split(".")[0] for p in g["params"]} for g in optimizer.param_groups]
    assert groups == [{"bert"}, {"bert"}, {"classifier"}, {"classifier"}]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [cfg.weight_decay, 0.0] * 2
    assert len(make_optimizer(model, replace(cfg, head_lr=0.0)).param_groups) == 2  # the paper's single rate
    train(cfg)  # the schedule moves both heights by the same factor: their ratio stays head_lr / lr
    saved = torch.load(Path(cfg.out) / "last/trainer_state.pt", weights_only=True)["optimizer"]["param_groups"]
    assert saved[2]["lr"] / saved[0]["lr"] == pytest.approx(20) and saved[0]["lr"] > 0


def test_trim_vocab_changes_nothing_but_the_vocabulary(tmp_path, unigram_model):
    """A SentencePiece run with --trim-vocab keeps only the pieces its files use; every sentence splits
    as before, so the run computes the same function: the same dev F1 per epoch, the same weights."""
    base = config(tmp_path, model=str(unigram_model), lr=3e-3, epochs=2)
    full = replace(base, out=str(tmp_path / "full"))
    small = replace(base, out=str(tmp_path / "small"), trim_vocab=True)
    train(full), train(small)
    model_full, tok_full = load_ner_model(full.out)
    model_small, tok_small = load_ner_model(small.out)
    assert len(tok_small) < len(tok_full) * 0.8
    assert model_small.bert.config.vocab_size == len(tok_small)
    for s in read_conll(SAMPLE / "de/dev.txt"):
        ids_small, owners_small = tok_small.encode_words(s.words)
        ids_full, owners_full = tok_full.encode_words(s.words)
        assert tok_small.convert_ids_to_tokens(ids_small) == tok_full.convert_ids_to_tokens(ids_full)
    f1 = lambda run: [r["dev"][lang]["f1"] for r in history(run.out) for lang in sorted(r["dev"])]
    assert f1(full) == pytest.approx(f1(small), abs=1e-9)
    a, b = model_full.state_dict(), model_small.state_dict()
    rows = tok_full.convert_tokens_to_ids(tok_small.inv_vocab)
    embeddings = "bert.embeddings.word_embeddings.weight"
    worst = max((a[k] - b[k]).abs().max().item() for k in a if k != embeddings)
    assert worst < 1e-5 and (a[embeddings][rows] - b[embeddings]).abs().max() < 1e-5


@pytest.fixture
def cpu_fp16(monkeypatch):
    """fp16 autocast and a GradScaler on the CPU (only CUDA takes that path for real), with the
    scaler's growth interval cut from 2,000 steps to 3 so that a test sees the scale grow back."""
    monkeypatch.setattr(device_module, "ALLOW_CPU_FP16", True)
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled=True: real(device, enabled=enabled,
                                                                                     growth_interval=3))


def test_fp16_grad_scaler_skips_an_overflow_and_grows_back(tmp_path, cpu_fp16, monkeypatch):
    """An inf in one step's gradients: that step changes no weight and halves the scale; three clean
    steps later the scale has doubled again."""
    scales, weights, step = [], [], {"n": 0}
    cfg = config(tmp_path, precision="fp16", epochs=1, max_sentences=80, test=[])
    original_train_step = train_module.train_step

    def observed_train_step(loop, *rest):
        model, state = loop.model, loop.state
        step["n"] += 1
        if step["n"] == 3:  # poison this step's gradients: the scaler must find the inf and skip
            hook = model.classifier.weight.register_hook(lambda g: g * float("inf"))
        before = model.classifier.weight.detach().clone()
        loss = original_train_step(loop, *rest)
        if step["n"] == 3:
            hook.remove()
        weights.append(torch.equal(before, model.classifier.weight.detach()))
        scales.append(state.scaler.get_scale())
        return loss
    monkeypatch.setattr(train_module, "train_step", observed_train_step)
    train(cfg)
    assert weights[2] and not any(weights[:2]) and not weights[3]  # step 3 skipped, the others stepped
    assert scales[2] == scales[1] / 2  # the overflow halved the scale
    assert scales[5] == scales[2] * 2  # three clean steps: it grew back


def test_fp16_scaler_state_survives_resume_bit_for_bit(tmp_path, cpu_fp16):
    full = config(tmp_path / "a", precision="fp16", epochs=3)
    train(full)
    part = config(tmp_path / "b", precision="fp16", epochs=3, stop_after=1)
    train(part)
    train(replace(part, stop_after=0, resume=True))
    a, b = final_weights(full.out), final_weights(part.out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = lambda c: torch.load(Path(c.out) / "last/trainer_state.pt", weights_only=True)["scaler"]
    assert state(full) == state(part) and state(full)["scale"] > 0


def test_a_single_seed_report_shows_no_spread(tmp_path, capsys):
    from minibert_ner.train import report_seeds
    text = report_seeds([dict(seed=3, best_dev_f1=0.5, test={"en": 0.25})])
    assert text.startswith("seed 3:") and "±" not in text and "25.00" in text


def test_a_checkpoint_names_its_data_files_without_this_machines_paths(tmp_path):
    """config.json travels with the model (the hub, a colleague); run.json, which --resume reads, keeps the paths."""
    cfg = config(tmp_path, epochs=1, test=[])
    train(cfg)
    saved = json.loads((Path(cfg.out) / "best" / "config.json").read_text())["minibert_ner"]["train_config"]
    assert saved["train"] == [["en", "train.txt"], ["de", "train.txt"]] and str(SAMPLE) not in json.dumps(saved)
    assert str(SAMPLE) in (Path(cfg.out) / "last" / "run.json").read_text()


def test_a_resumed_run_keeps_the_thread_count_it_began_with(tmp_path, monkeypatch):
    """--threads 0 takes the cores idle at the start; a resume that found another number would sum in
    another order and lose the bit-for-bit continuation."""
    import minibert_ner.device as device
    monkeypatch.setattr(device, "idle_cores", lambda seconds=0.2: 2)
    part = config(tmp_path, epochs=2, stop_after=1, threads=0)
    train(part)
    monkeypatch.setattr(device, "idle_cores", lambda seconds=0.2: 1)  # a busier machine at resume time
    before = torch.get_num_threads()
    try:
        train(replace(part, stop_after=0, resume=True))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_papers_letter_without_clipping_still_updates_the_weights(tmp_path):
    """--recipe paper sets clip 0 (no clipping); clip_grad_norm_ with 0 would scale every gradient to
    zero and the run would never move from its initial weights."""
    from minibert_ner.train import optimizer_step
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(3, 4)).sum().backward()
    optimizer_step(optimizer, torch.amp.GradScaler("cpu", enabled=False), clip=0.0)
    assert not torch.equal(before, layer.weight) and layer.weight.grad is None
    (cfg,) = configs_from_argv(["--train", f"en={SAMPLE / 'en/train.txt'}", "--recipe", "paper", "--out", str(tmp_path)])
    run = replace(config(tmp_path / "paper"), schedule=cfg.schedule, warmup=cfg.warmup, weight_decay=cfg.weight_decay,
                  clip=cfg.clip, epochs=2)
    assert run.clip == 0.0
    train(run)
    losses = [r["train_loss"] for r in history(run.out)]
    assert losses[1] < losses[0]  # it learns
