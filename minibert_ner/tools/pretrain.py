"""Masked-LM pretraining of a small multilingual BERT from scratch: where mBERT's multilinguality comes from.

    python -m minibert_ner.tools.pretrain --out runs/pocket              # the pocket model, in 60 minutes
    python -m minibert_ner.train --model runs/pocket ...           # then fine-tune it as the paper does mBERT
    python -m minibert_ner.tools.pretrain --out runs/random --steps 1 --lr 0   # its random init: the baseline
    python -m minibert_ner.tools.pretrain --from MODEL --head-only --out runs/head   # fit a missing MLM head

The paper rests on mBERT: one BERT pretrained with masked-LM on many languages at once, with one shared
WordPiece vocabulary. This is that recipe at pocket scale. The objective IS fine-tuning's CL task, run
by the same code (train.aux_losses: windows.cloze_mask picks 15% of the pieces, 80% become [MASK], 10%
a random piece, 10% stay; heads.ClozeHead predicts them through the word-embedding matrix), on windows
of every language drawn with smoothed weights (corpus.py); the step is train's (get_lr, make_optimizer,
resolve_precision, the same order of operations). No next-sentence prediction: RoBERTa (Liu et al.,
2019) found that dropping it matches or beats BERT downstream, NER reads one window and never a
sentence pair, and WikiANN's sentences come without documents to take a "next sentence" from.

The run folder OUT:
  OUT/config.json, model.safetensors, vocab.txt, tokenizer_config.json, special_tokens_map.json: the
      latest checkpoint as a Hugging Face BertForMaskedLM (`bert.*`, `cls.predictions.*`, the decoder
      tied to the word embeddings), so `train --model OUT` and transformers load it as it is
  OUT/last/      the same plus trainer_state.pt and run.json (what --resume needs), swapped in whole
  OUT/log.jsonl  one record per evaluation: held-out MLM loss and accuracy per language, tokens/s, ETA
  OUT/mlm.svg    held-out MLM accuracy per language over minutes of training
--minutes is a wall-clock budget: without --steps the schedule is fitted to it from a measured step;
the run stops cleanly at the budget either way, and --resume continues a stopped or killed run.
Left out: whole-word masking, gradient accumulation, several processes, longer windows late in training.
"""
import argparse
import copy
import json
import math
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .. import hub, runs
from ..cli import parse_files, run_command
from ..config import check_device
from ..device import resolve_device, resolve_precision, set_threads
from ..files import file_fingerprint, write_json, write_text
from ..heads import NERModel, cloze_loss
from ..model import BertConfig, BertModel
from ..speed import keep_freed_memory
from ..tokenizer import WordPieceTokenizer, learn_vocab
from ..train import ConfigError, TrainConfig, TrainerState, aux_losses, get_lr, make_optimizer, optimizer_step
from ..unigram import load_tokenizer
from ..weights import check_vocab_size, init_cloze_head, load_bert, read_mlm_head, save_bert
from ..windows import IGNORE_INDEX, MaskVocab, cloze_mask
from . import corpus

MODEL_FILES = ("config.json", "model.safetensors")  # + the tokenizer's files (tokenizer_files)
EVALUATIONS = 20  # held-out evaluations (each with a checkpoint) per run, fewer in short --minutes budgets


@dataclass
class PretrainConfig:
    """Every knob of a pretraining run: the single source of defaults (the command line reads them
    from here, as train's reads TrainConfig's). [BERT] Devlin et al.'s pretraining; [ours] our choice."""

    out: str = ""                # the run folder (required)
    minutes: float = 60.0        # wall-clock budget, setup included; the run stops cleanly at it
    steps: int = 0               # the schedule's length; 0 = as many steps as --minutes holds (measured)
    init_from: str = ""          # --from: start from this model (folder or hub id), not random weights
    head_only: bool = False      # with init_from: fit only the masked-LM head, the encoder frozen
    reinit: bool = False         # with init_from: its shape and tokenizer, freshly drawn weights
    layers: int = 2              # [ours] a new model's shape: 2 x 256 beat 4 x 256 at the hour (README)
    hidden: int = 256
    heads: int = 4
    intermediate: int = 1024
    max_len: int = 64            # pieces per window, [CLS] and [SEP] included (a new model's positions)
    data: str = ""               # a folder laid out as ../shared/data; "" = it or data/sample; "none"
    text: list = field(default_factory=list)  # [(lang, path)] raw text, one sentence per line
    langs: str = ""              # comma-separated languages of the corpus to keep; "" = all
    vocab: str = ""              # a vocab.txt to use; "" = learn one from the corpus
    vocab_size: int = 30000
    smoothing: float = 0.7       # [BERT] mBERT's exponent: p_l proportional to n_l^0.7
    batch_size: int = 32
    lr: float = 1e-3             # [ours] a small model from scratch takes a large lr
    warmup: float = 0.05         # [ours]
    weight_decay: float = 0.01   # [BERT]
    clip: float = 1.0            # [BERT]
    mask_p: float = 0.15         # [BERT]
    precision: str = "auto"      # as train's
    device: str = "auto"
    threads: int = 0             # 0 = every idle core, as train
    seed: int = 1
    eval_every: int = 0          # steps between evaluations; 0 = EVALUATIONS per run
    stop_after: int = 0          # stop after this many steps (0 = never); --resume continues
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False


# How a run is carried out, not what it computes: --resume accepts other values for these.
RUN_CONTROL = {"out", "minutes", "stop_after", "resume", "overwrite", "quiet", "device", "threads"}


@dataclass
class Run:
    """Everything the loop needs, built once by `prepare`."""
    cfg: PretrainConfig
    out: Path
    log: object
    dtype: torch.dtype
    tok: object          # WordPieceTokenizer, or UnigramTokenizer for an XLM-R-vocabulary --from
    model: NERModel
    streams: list        # corpus.Stream per language: the training text
    weights: torch.Tensor  # the languages' sampling weights p_l
    heldout: dict        # lang -> windows.Batch of its held-out text
    info: dict           # run.json: what --resume compares
    recipe: TrainConfig  # our settings as train's functions read them: the CL task, lr schedule, AdamW


# ---------------------------------------------------------------------------------------------
# prepare: corpus, vocabulary, model


def build_tokenizer(cfg, folder, sentences):
    """The model folder's vocab, --vocab, or a cased vocab learnt from the training words (deterministic)."""
    if folder is not None:
        return load_tokenizer(folder)  # WordPiece (vocab.txt) or SentencePiece Unigram (tokenizer.json)
    if cfg.vocab:
        return WordPieceTokenizer.from_file(cfg.vocab)
    tokens = learn_vocab((w for s in sentences.values() for words in s for w in words), cfg.vocab_size)
    return WordPieceTokenizer({t: i for i, t in enumerate(tokens)})


def build_model(cfg, tok, folder):
    """A new BERT of the configured shape (folder None) or the one in `folder`, with BERT's MLM head:
    an NERModel with the cloze head, i.e. the CL task's model (its NER classifier stays unused)."""
    if folder is None:
        bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                                    num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate,
                                    max_position_embeddings=cfg.max_len))
    else:  # --reinit: the folder's shape with weights drawn afresh (the caller has seeded torch)
        bert = BertModel(BertConfig.from_json(folder / "config.json")) if cfg.reinit else \
            load_bert(folder, verbose=not cfg.quiet)
        check_vocab_size(tok, bert.config, folder)
    if cfg.max_len > bert.config.max_position_embeddings:
        raise ConfigError(f"--max-len {cfg.max_len} exceeds the model's {bert.config.max_position_embeddings} positions")
    # --head-only: #frz = every layer freezes the embeddings (so the tied decoder too) and all layers
    model = NERModel(bert, ["O"], cloze=True, frz=bert.num_layers if cfg.head_only else -1)
    model.classifier.requires_grad_(False)  # never trained, never saved
    mlm = read_mlm_head(folder) if folder is not None and not cfg.reinit else {}
    if mlm:
        init_cloze_head(model, mlm)
    return model


def recipe(cfg):
    """The CL task, the schedule and the optimizer as fine-tuning runs them: a TrainConfig with our
    values (its other fields keep their defaults), for train's aux_losses, get_lr and make_optimizer."""
    return TrainConfig(aux=["CL"], mask_p=cfg.mask_p, lr=cfg.lr, warmup=cfg.warmup, weight_decay=cfg.weight_decay,
                       clip=cfg.clip)


def run_info(cfg, files):
    """What --resume compares: the settings that shape the result, and every input file's content."""
    config = {k: v for k, v in asdict(cfg).items() if k not in RUN_CONTROL}
    paths = [p for _, p in files + cfg.text] + ([cfg.vocab] if cfg.vocab else [])
    info = dict(config=config, data={str(Path(p).resolve()): file_fingerprint(p) for p in paths})
    return json.loads(json.dumps(info, default=str))  # tuples -> lists, as it reads back


def prepare(cfg, folder, files, info, dtype, log):
    """Read the corpus, hold out a slice per language, build the tokenizer and the model (on the CPU:
    the caller moves it)."""
    train_text, heldout_text = corpus.split_heldout(corpus.read_sentences(files, cfg.text, cfg.langs))
    tok = build_tokenizer(cfg, folder, train_text)
    streams = [corpus.encode_stream(s, tok) for s in train_text.values()]
    heldout = {lang: corpus.encode_stream(s, tok) for lang, s in heldout_text.items()}
    weights = corpus.smoothed_weights([len(s.ids) for s in streams], cfg.smoothing)
    log(corpus.describe(dict(zip(train_text, streams)), heldout, weights, tok))
    return Run(cfg, Path(cfg.out), log, dtype, tok, build_model(cfg, tok, folder), streams, weights,
               {lang: corpus.heldout_batch(s, cfg.max_len, tok) for lang, s in heldout.items() if len(s.ids)},
               info, recipe(cfg))


# ---------------------------------------------------------------------------------------------
# one step, one evaluation, one checkpoint


def train_step(run, state, batch):
    """One update: autocast forward (the CL loss) -> backward -> unscale, clip, step, update, zero_grad."""
    device = next(run.model.parameters()).device
    with torch.autocast(device.type, dtype=run.dtype, enabled=run.dtype != torch.float32):
        loss = aux_losses(run.model, batch.to(device), run.recipe, run.tok, state.generators["mask"])["cloze"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the masked-LM loss is NaN/inf at step {state.step}; the last checkpoint is "
                                 f"{run.out / 'last'}. Try a lower --lr or --precision fp32")
    state.scaler.scale(loss).backward()
    optimizer_step(state.optimizer, state.scaler, run.cfg.clip)
    return loss.item()


def measure_step(run, steps=8, warmup=3):
    """Seconds per step, timed on a throwaway copy of the model: the median of 8 steps after 3
    untimed ones. The first steps are slower than the run's steady state (the optimizer's moments
    are allocated, memory is first touched), so timing them fits too few steps: the default hour
    once ended after 38 minutes when only steps 2 and 3 were timed.
    The run's own weights, optimizer and random generators stay untouched."""
    rng, probe = torch.get_rng_state(), replace(run, model=copy.deepcopy(run.model))
    state = TrainerState(make_optimizer(probe.model, run.recipe), torch.amp.GradScaler(enabled=False),
                         dict(mask=torch.Generator(next(probe.model.parameters()).device).manual_seed(0)))
    g, times = torch.Generator().manual_seed(0), []
    for _ in range(warmup + steps):
        batch = corpus.sample_batch(run.streams, run.weights, run.cfg.batch_size, run.cfg.max_len, run.tok, g)
        t = time.perf_counter()
        train_step(probe, state, batch)
        times.append(time.perf_counter() - t)
    torch.set_rng_state(rng)  # dropout drew from it
    return statistics.median(times[warmup:])


@torch.no_grad()
def evaluate(run):
    """Masked-LM loss and accuracy per language on its held-out windows. The masks come from a generator
    seeded afresh each time, so every evaluation asks the very same questions."""
    model, tok, device = run.model.eval(), run.tok, next(run.model.parameters()).device
    g = torch.Generator(device).manual_seed(run.cfg.seed + 999)
    scores = {}
    for lang, batch in run.heldout.items():
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        masked, targets = cloze_mask(ids, mask, MaskVocab.of(tok), run.cfg.mask_p, g)
        with torch.autocast(device.type, dtype=run.dtype, enabled=run.dtype != torch.float32):
            logits = model.cloze_logits(model.encode(masked, mask), targets)  # (N, V): masked pieces only
        picked = targets[targets != IGNORE_INDEX]
        scores[lang] = dict(loss=round(cloze_loss(logits, targets).item(), 4), masked=picked.numel(),
                            accuracy=round((logits.argmax(-1) == picked).float().mean().item(), 4))
    model.train()
    return scores


def pooled_accuracy(scores):
    """The accuracy over every language's masked pieces together."""
    return round(sum(s["accuracy"] * s["masked"] for s in scores.values()) / max(1, sum(s["masked"] for s in scores.values())), 4)


def save_model(folder, model, tok, extra):
    """A Hugging Face BertForMaskedLM folder; the decoder is not stored (tied to the word embeddings)."""
    head = {f"cls.predictions.{k}": v for k, v in model.cls.predictions.state_dict().items()}
    save_bert(model.bert, folder, prefix="bert.", extra_tensors=head, architectures=["BertForMaskedLM"],
              minibert_ner=dict(extra, lowercase=tok.lowercase))
    runs.save_tokenizer(folder, tok, model.bert.config.max_position_embeddings)


def checkpoint(run, state):
    """OUT/last swapped in whole, then its model files copied to OUT itself, each written aside and
    renamed (only model.safetensors ever changes): OUT always holds one complete model."""
    if run.cfg.overwrite and len(state.history) == 1:  # the first checkpoint of a run that replaces one
        runs.set_aside(run.out)
    tmp = run.out / "last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(tmp, run.model, run.tok, dict(pretrain=run.info["config"], step=state.step))
    write_json(tmp / "run.json", run.info)
    torch.save(state.state_dict(), tmp / "trainer_state.pt")
    runs.swap_in(tmp, run.out / "last")
    for name in [*MODEL_FILES, *run.tok.tokenizer_files(0)]:
        shutil.copyfile(run.out / "last" / name, run.out / f"{name}.tmp")
        (run.out / f"{name}.tmp").replace(run.out / name)
    write_log(run.out, state.history)
    runs.drop_set_aside(run.out)


def write_log(out, history):
    """Rewrite OUT/log.jsonl and OUT/mlm.svg whole from the history (each evaluation exactly once)."""
    write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    write_text(out / "mlm.svg", svg_plot(history))


def svg_plot(history, width=480, height=300):
    """Held-out MLM accuracy (%) per language over minutes of training, as a dependency-free SVG."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
    left, right, top, bottom = 50, 60, 20, 40
    end = max(r["seconds"] / 60 for r in history) or 1.0
    x = lambda minutes: left + minutes / end * (width - left - right)
    y = lambda accuracy: top + (1 - accuracy) * (height - top - bottom)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">minutes of training '
             f'(0..{end:.1f})</text><text x="12" y="{top - 6}">held-out masked-LM accuracy %</text>']
    for a in (0, 0.25, 0.5, 0.75, 1.0):  # horizontal grid with labels
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(a):.1f}" y2="{y(a):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y(a) + 4:.1f}" text-anchor="end">{a * 100:.0f}</text>')
    for i, lang in enumerate(history[-1]["heldout"]):
        points = " ".join(f"{x(r['seconds'] / 60):.1f},{y(r['heldout'][lang]['accuracy']):.1f}" for r in history)
        c = colors[i % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{points}"/>'
                     f'<text x="{width - right + 8}" y="{top + 13 * (i + 1)}" fill="{c}">{lang}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


# ---------------------------------------------------------------------------------------------
# the run


def start(run, state, t_start):
    """A fresh run's step 0: the untrained model's scores and the time they take, (without --steps)
    the schedule fitted to --minutes from a measured step, and a first checkpoint."""
    t, scores = time.time(), evaluate(run)
    state.history.append(dict(step=0, seconds=0.0, tokens=0, eval_s=round(time.time() - t, 2),
                              accuracy=pooled_accuracy(scores), heldout=scores))
    steps, evaluations, eval_s = run.cfg.steps, EVALUATIONS, state.history[0]["eval_s"]
    if not steps:
        step_seconds, left = measure_step(run), 60 * run.cfg.minutes - (time.time() - t_start)
        evaluations = min(EVALUATIONS, max(1, int(0.1 * left / eval_s)))  # at most a tenth of the time
        steps = int(0.97 * (left - evaluations * eval_s) / step_seconds)  # 3% to spare
        if steps < 10:
            raise ConfigError(f"--minutes {run.cfg.minutes} leaves room for {max(steps, 0)} steps of "
                              f"{step_seconds:.2f} s: give more --minutes or --steps, or a smaller model or batch")
        run.log(f"{step_seconds:.2f} s per step of {run.cfg.batch_size} windows: {steps} steps fit")
    every = run.cfg.eval_every or max(1, steps // evaluations)
    run.cfg = replace(run.cfg, steps=steps, eval_every=every)
    run.info["config"].update(steps=steps, eval_every=every)  # what --resume keeps
    checkpoint(run, state)


# (option, lowest, highest) of PretrainConfig's numbers: the ranges check_ranges enforces
RANGES = [("minutes", 0, 1e9), ("steps", 0, 10**9), ("layers", 1, 48), ("hidden", 1, 8192), ("heads", 1, 128),
          ("intermediate", 1, 65536), ("max_len", 3, 4096), ("vocab_size", 16, 10**7), ("smoothing", 0.0, 1.0),
          ("batch_size", 1, 10**6), ("lr", 0.0, 1.0), ("warmup", 0.0, 1.0), ("weight_decay", 0.0, 1.0),
          ("clip", 0.0, 1e6), ("mask_p", 0.0, 1.0), ("threads", 0, 4096), ("eval_every", 0, 10**9),
          ("stop_after", 0, 10**9)]


def check_ranges(cfg):
    """Every number within its range (NaN fails every comparison, so it is refused too), the new
    model's heads dividing its hidden size, a precision and a device there are."""
    for name, low, high in RANGES:
        if not low <= getattr(cfg, name) <= high:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: expected a number from {low} to {high}")
    if not cfg.init_from and cfg.hidden % cfg.heads:
        raise ConfigError(f"--hidden {cfg.hidden} is not a multiple of --heads {cfg.heads}")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"--precision {cfg.precision!r}: use auto, fp32, bf16 or fp16")
    check_device(cfg.device)


def pretrain(cfg):
    """Pretrain (or, --head-only, fit the MLM head of) one BERT into cfg.out; returns the last log record."""
    t_start = time.time()
    if not cfg.out:
        raise ConfigError("no run folder: pass --out DIR (the model, its checkpoints and log go there)")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite deletes it: pick one")
    if cfg.head_only and not cfg.init_from:
        raise ConfigError("--head-only fits the MLM head of an existing model: name it with --from FOLDER_OR_ID")
    if cfg.reinit and (not cfg.init_from or cfg.head_only):
        raise ConfigError("--reinit draws new weights for the shape of the model named by --from (and cannot "
                          "go with --head-only, which keeps its weights)")
    check_ranges(cfg)
    log = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    set_threads(cfg.threads)
    keep_freed_memory()
    device = resolve_device(cfg.device)
    precision, dtype = resolve_precision(cfg.precision, device)
    out, files = Path(cfg.out), corpus.training_files(cfg.data)
    point = open_run(cfg, log)
    if point is not None:  # the schedule saved (given, or fitted to the first --minutes) stays
        cfg = replace(cfg, **{k: getattr(cfg, k) or point[0]["config"][k] for k in ("steps", "eval_every")})
    info = run_info(cfg, files)
    if point is not None:
        runs.compare_runs(point[0], info, None, out)  # pretrain has no --allow-change
    torch.manual_seed(cfg.seed)  # the initial weights
    # a resumed run reads its weights as `train --model` would: last/ is a BertForMaskedLM folder too
    folder = out / "last" if point else hub.model_folder(cfg.init_from, None, log) if cfg.init_from else None
    # a resumed run reads its weights from last/: --reinit drew them once, at the start
    run = prepare(replace(cfg, reinit=cfg.reinit and point is None), folder, files, info, dtype, log)
    run.model.to(device)
    state = TrainerState(make_optimizer(run.model, run.recipe),
                         torch.amp.GradScaler(device.type, enabled=precision == "fp16"),  # a no-op unless fp16
                         dict(sample=torch.Generator().manual_seed(cfg.seed),  # languages and windows
                              mask=torch.Generator(device).manual_seed(cfg.seed + 1)))
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    log(f"{'the MLM head only' if cfg.head_only else 'masked-LM'}: {trainable / 1e6:.2f}M trainable parameters, "
        f"vocab {len(run.tok)}, precision {precision} on {device}")
    if point is not None:
        state.load_state_dict(point[1])
        write_log(out, state.history)  # the log as of the checkpoint: a line written after it is gone
        log(f"resumed {out} at step {state.step} of {cfg.steps}")
    else:
        start(run, state, t_start)
    cfg = run.cfg  # with the schedule fitted to --minutes
    deadline = t_start + 60 * cfg.minutes - state.history[-1]["eval_s"]  # room for a last evaluation
    since = dict(time=time.time(), tokens=0, losses=[])  # since the last record
    while state.step < cfg.steps:
        if time.time() > deadline or state.step == cfg.stop_after > 0:
            if since["losses"]:  # keep what was done since the last record
                end_of_interval(run, state, since)
            log(f"stopping at step {state.step} of {cfg.steps}: continue with the same command + --resume")
            break
        # languages drawn p_l ∝ n_l^0.7, windows cut from the flat arrays now: nothing is stored
        batch = corpus.sample_batch(run.streams, run.weights, cfg.batch_size, cfg.max_len, run.tok,
                                    state.generators["sample"])
        lr = get_lr(state.step, cfg.steps, run.recipe)
        for g in state.optimizer.param_groups:
            g["lr"] = lr
        since["losses"].append(train_step(run, state, batch))
        since["tokens"] += int(batch.attention_mask.sum())
        state.step += 1
        # the held-out evaluation draws from its own generator and runs without dropout, so when it
        # happens (and whether a kill + --resume happened in between) changes nothing in training
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            end_of_interval(run, state, since)
            since = dict(time=time.time(), tokens=0, losses=[])
    log(f"the model: {out} (a BertForMaskedLM folder); fine-tune it with\n"
        f"  python -m minibert_ner.train --model {out} --train ... --out RUN")
    return state.history[-1]


def end_of_interval(run, state, since):
    """Evaluate on the held-out text, log a record (speed, loss, time left), checkpoint."""
    last, seconds = state.history[-1], time.time() - since["time"]
    t, scores = time.time(), evaluate(run)
    left, steps = run.cfg.steps - state.step, len(since["losses"])
    rec = dict(step=state.step, seconds=round(last["seconds"] + seconds, 1), tokens=last["tokens"] + since["tokens"],
               lr=get_lr(state.step - 1, run.cfg.steps, run.recipe), train_loss=round(sum(since["losses"]) / steps, 4),
               tokens_per_s=round(since["tokens"] / seconds), eval_s=round(time.time() - t, 2),
               eta_s=round(left * seconds / steps + math.ceil(left / run.cfg.eval_every) * last["eval_s"]),
               accuracy=pooled_accuracy(scores), heldout=scores)
    state.history.append(rec)
    checkpoint(run, state)
    run.log(f"step {state.step}/{run.cfg.steps}: held-out MLM accuracy {rec['accuracy'] * 100:.1f}% ("
            + " ".join(f"{lang} {s['accuracy'] * 100:.0f}" for lang, s in scores.items())
            + f") | loss {rec['train_loss']:.3f} | {rec['tokens_per_s']:,} tokens/s | ETA {rec['eta_s'] / 60:.1f} min")


def open_run(cfg, log):
    """Start, continue or refuse the run in cfg.out; returns the resume point (run.json, state) or None."""
    out = Path(cfg.out)
    if runs.holds_a_run(out) and not (cfg.resume or cfg.overwrite):
        raise runs.RunError(f"{out} already holds a run: pass --resume to continue it, --overwrite to delete "
                            f"it and start afresh, or another --out")
    model_files = [f for f in ("config.json", hub.WEIGHTS) if (out / f).exists()]
    if model_files and not runs.holds_a_run(out):  # e.g. --out the very folder of --from
        raise runs.RunError(f"{out} holds a model that is not a pretraining run ({', '.join(model_files)}); "
                            f"pretraining would overwrite it: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # --overwrite deletes nothing yet: the old run is set aside at the new one's first checkpoint
    for note in runs.recover(out) if cfg.resume or cfg.overwrite else []:  # a swap the kill interrupted
        log(f"{out}: {note}")
    for leftover in out.glob("*.tmp"):  # a model file, the log or the plot, written aside, never renamed
        if leftover.is_file():
            leftover.unlink()
    point = runs.resume_point(out, cfg.resume, "model.safetensors", log)
    if cfg.resume and point is None:
        runs.clear_run(out)
    return point


def build_parser():
    d = PretrainConfig()  # the defaults, shown in the help texts
    p = argparse.ArgumentParser(prog="python -m minibert_ner.tools.pretrain", description=__doc__.split("\n\n")[0],
                                epilog="examples:\n" + __doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("the run")
    g.add_argument("--out", help="the run folder: the model itself, last/ (for --resume), log.jsonl, mlm.svg")
    g.add_argument("--minutes", type=float, help=f"wall-clock budget of this command, setup included; stops "
                   f"cleanly (default {d.minutes})")
    g.add_argument("--steps", type=int, help="the schedule's length in steps (default 0: as many as --minutes "
                   "holds, measured)")
    g.add_argument("--from", dest="init_from", metavar="MODEL", help="start from this model (folder or hub id) "
                   "instead of random weights")
    g.add_argument("--head-only", action="store_true", help="with --from: fit only the masked-LM head "
                   "(transform + bias); the encoder and the decoder, tied to its word embeddings, stay frozen")
    g.add_argument("--reinit", action="store_true", help="with --from: keep the model's shape and tokenizer but "
                   "draw new random weights (BERT's init, from --seed): a random-init control of a pretrained "
                   "model, e.g. with --steps 1 --lr 0 (README)")
    g = p.add_argument_group("a new model")
    g.add_argument("--layers", type=int, help=f"transformer layers (default {d.layers}; 2 x 256 beat 4 x 256 at "
                   "the hour: README)")
    g.add_argument("--hidden", type=int, help=f"hidden size (default {d.hidden})")
    g.add_argument("--heads", type=int, help=f"attention heads (default {d.heads})")
    g.add_argument("--intermediate", type=int, help=f"feed-forward size (default {d.intermediate})")
    g.add_argument("--max-len", type=int, help=f"pieces per window, [CLS] and [SEP] included; also a new "
                   f"model's positions (default {d.max_len})")
    g = p.add_argument_group("the text and the vocabulary")
    g.add_argument("--data", help="a folder laid out as ../shared/data whose TRAINING files give the text "
                   "(default: ../shared/data, or data/sample when absent); 'none': --text only")
    g.add_argument("--text", nargs="+", metavar="LANG=FILE", help="raw text, one sentence per line, added to "
                   "the corpus")
    g.add_argument("--langs", help="only these languages of the corpus, comma-separated (e.g. en); default: all")
    g.add_argument("--vocab", help="a vocab.txt to use (e.g. mBERT's cased one); default: learn one from the "
                   "corpus")
    g.add_argument("--vocab-size", type=int, help=f"size of the vocabulary learnt from the corpus "
                   f"(default {d.vocab_size})")
    g.add_argument("--smoothing", type=float, help=f"languages drawn with p_l proportional to n_l^SMOOTHING "
                   f"(default {d.smoothing}, mBERT's)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, help=f"windows per step (default {d.batch_size})")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    g.add_argument("--warmup", type=float, help=f"fraction of the steps with rising lr, then linear decay to 0 "
                   f"(default {d.warmup})")
    g.add_argument("--weight-decay", type=float, help=f"AdamW weight decay, not on biases and LayerNorms "
                   f"(default {d.weight_decay})")
    g.add_argument("--clip", type=float, help=f"gradient-norm clipping (default {d.clip})")
    g.add_argument("--mask-p", type=float, help=f"share of the pieces to predict (default {d.mask_p}, BERT's)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="auto (default), as train: "
                   "bf16 where the CPU or GPU computes it natively, else fp32 on CPU and fp16 on old GPUs")
    g.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--threads", type=int, help="CPU threads for PyTorch (default 0: the cores idle when the "
                   "command starts, as train); 1 on a machine other jobs share")
    g.add_argument("--seed", type=int, help=f"random seed: the initial weights, the windows drawn, the masks "
                   f"(default {d.seed})")
    g = p.add_argument_group("checkpoints and resuming")
    g.add_argument("--eval-every", type=int, help=f"steps between evaluations and checkpoints (default 0: "
                   f"{EVALUATIONS} per run, fewer when they would take over a tenth of --minutes)")
    g.add_argument("--stop-after", type=int, help="stop after this many steps (default 0: never); continue "
                   "with --resume")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(same settings)")
    g.add_argument("--overwrite", action="store_true", help="delete the run in --out and start afresh")
    g.add_argument("--quiet", action="store_true", help="print nothing")
    g.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return p


def main(argv=None):
    args = vars(build_parser().parse_args(argv))  # only the options given: PretrainConfig fills the rest
    debug = args.pop("debug", False)

    def body():
        pretrain(PretrainConfig(**dict(args, text=parse_files(args.get("text", []), "text"))))
        return 0
    return run_command(body, debug, on_interrupt="the last checkpoint is kept: the same command with --resume continues")


if __name__ == "__main__":
    import minibert_ner.tools.pretrain  # the package's copy of this module, whose classes the library knows
    sys.exit(minibert_ner.tools.pretrain.main())
