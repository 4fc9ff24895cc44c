"""Fine-tune one NER model on many languages at once: the hand-written training loop.

    python -m minibert_ner.train                      # a 2-minute demo on the bundled sample
    python -m minibert_ner.train --help               # every option, explained

The recipe is the paper's ("Data and Experimental Setup", "Experiment details"): mBERT + a linear
layer per word piece, IOB1 tags on first pieces, AdamW at lr 5e-5, batch 32, 20 epochs, inputs of
at most 64 pieces cut into windows overlapping by 8, languages mixed at random each epoch, the
model chosen by best dev F1. Zero-shot: train on some languages, select and test on another.
#frz freezes the embeddings and the lowest k layers; LI / CL / PC add auxiliary losses computed on
unlabeled target-language text, summed with the NER loss.

A run, top to bottom (`train`): prepare (data, tokenizer, model) -> epochs of steps -> end of
epoch (evaluate dev, keep the best, checkpoint, log) -> test the best model. One step: set lr ->
autocast forward -> loss / labelled pieces of the global batch -> scaler.scale(loss).backward()
-> unscale_, clip, step, update, zero_grad. One code path serves fp32, bf16 and fp16 (the
GradScaler is a no-op unless fp16), one process or many (torchrun), a fresh run or a resumed one.
Left out: trainer frameworks, callbacks, early stopping (the paper trains all 20 epochs).
"""
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from . import hub, runs
from .config import DEMO_VOCAB_SIZE, TINY_BERT, ConfigError, TrainConfig, check_config, run_info
from .data import DataError, build_label_list, check_labels, read_conll, read_text, unknown_tags_to_o
from .device import resolve_precision, set_threads
from .distributed import all_finite, barrier, rank_and_world, setup_distributed, sum_over_processes
from .files import write_json
from .heads import NERModel, cloze_loss, ner_loss
from .model import BertConfig, BertModel
from .predict import Inference, evaluate
from .scoring import format_report, score
from .speed import PrefixCache, keep_freed_memory
from .tokenizer import WordPieceTokenizer, learn_vocab
from .unigram import load_tokenizer
from .weights import check_vocab_size, init_cloze_head, load_bert, read_mlm_head
from .windows import (IGNORE_INDEX, MaskVocab, Windowing, batch_indices, cloze_mask, collate, encode_sentences,
                      predictive_cloze_mask)

__all__ = ["TrainConfig", "ConfigError", "train", "prepare", "get_lr", "make_optimizer", "optimizer_step", "resolve_precision",
           "TrainerState", "aux_losses", "main"]


# ---------------------------------------------------------------------------------------------
# prepare: data, tokenizer, model


@dataclass
class Prepared:
    """Everything the loop needs, built once by `prepare`."""
    tok: object          # WordPieceTokenizer (mBERT) or UnigramTokenizer (XLM-R's vocabulary)
    model: NERModel
    labels: list
    train: list          # windows of the training sentences, all languages
    unlabeled: list      # windows of the raw target text (auxiliary tasks)
    dev: dict            # lang -> (sentences, windows)
    test: dict
    n_train_sentences: int
    n_labelled: list     # labelled pieces per training window (the loss divides by their sum)


def build_tokenizer(cfg, folder, train_sentences):
    """The model folder's tokenizer (vocab.txt: WordPiece; tokenizer.json: SentencePiece Unigram), or
    (demo, folder None) a WordPiece vocabulary learnt from the training words."""
    if folder is not None:
        return load_tokenizer(folder, lowercase=cfg.lowercase)
    tokens = learn_vocab([w for s in train_sentences for w in s.words], DEMO_VOCAB_SIZE)
    return WordPieceTokenizer({t: i for i, t in enumerate(tokens)})


def build_model(cfg, folder, tok, labels, languages, log):
    """The pretrained encoder in `folder` (None: a small random BERT) with the heads the run needs.
    A trimmed tokenizer (--trim-vocab) loads only its pieces' embedding rows."""
    rows = tok.source_ids  # None, or the full vocabulary's ids of a trimmed one's pieces
    if folder is not None:
        config = BertConfig.from_json(folder / "config.json" if (folder / "config.json").is_file()
                                      else folder / "bert_config.json")
        if cfg.dropout >= 0:  # e.g. --dropout 0 for runs that must be bit-for-bit comparable
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = cfg.dropout
        if rows is not None:
            config.pad_token_id = tok.pad_token_id
        bert = load_bert(folder, config=config, verbose=not cfg.quiet, rows=rows)
        check_vocab_size(tok, bert.config, folder)
    else:
        shape = {**TINY_BERT, **cfg.tiny}
        if cfg.dropout >= 0:
            shape.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
        bert = BertModel(BertConfig(vocab_size=len(tok), **shape))
        log(f"no --model given: training a small RANDOMLY INITIALISED BERT ({shape['num_hidden_layers']} "
            f"layers, hidden {shape['hidden_size']}) with a {len(tok)}-piece vocabulary built from the "
            f"training sample. This demonstrates the pipeline; it is not mBERT, and its F1 is not the paper's.")
    if cfg.max_len > bert.config.max_position_embeddings:
        raise ConfigError(f"--max-len {cfg.max_len}: the model has {bert.config.max_position_embeddings} positions")
    if not -1 <= cfg.frz <= bert.num_layers:
        raise ConfigError(f"--frz {cfg.frz}: the model has {bert.num_layers} layers; use -1 ... {bert.num_layers}")
    model = NERModel(bert, labels, languages if "LI" in cfg.aux else None,
                     cloze=bool({"CL", "PC"} & set(cfg.aux)), frz=cfg.frz)
    if model.cls is not None:
        source = cloze_head_folder(cfg.cloze_head, folder) if cfg.cloze_head else folder
        mlm = read_mlm_head(source, rows) if source is not None else {}
        if mlm:
            init_cloze_head(model, mlm)
            log(f"the cloze head starts from {source}'s masked-LM head")
        elif cfg.cloze_head:
            raise ConfigError(f"--cloze-head {cfg.cloze_head}: its {hub.WEIGHTS} has no masked-LM head")
        else:
            log("the checkpoint has no masked-LM head: the cloze head starts from random weights")
    return model


def cloze_head_folder(path, model_folder):
    """--cloze-head's folder, once it is a model folder with --model's very vocabulary (the head's
    output rows are vocabulary ids, so another vocabulary would predict other pieces)."""
    folder = Path(path)  # a model folder: check_config saw to that
    vocab = [f for f in ("tokenizer.json", "vocab.txt") if model_folder is not None and (model_folder / f).is_file()]
    if not vocab or not (folder / vocab[0]).is_file() \
            or (folder / vocab[0]).read_bytes() != (model_folder / vocab[0]).read_bytes():
        raise ConfigError(f"--cloze-head {path}: its vocabulary ({vocab[0] if vocab else 'none'}) is not "
                          f"--model's; the head would predict other pieces")
    return folder


def trim_vocabulary(tok, sentences, log):
    """--trim-vocab [ours]: a tokenizer of only the pieces `sentences` use (and those it needs), so
    that a 250,002-piece vocabulary costs its embedding rows, gradients and AdamW moments only for
    the ~20,000 a corpus uses (build_model then reads only their rows). Every sentence of the run is
    split exactly as before; the checkpoint keeps its own smaller vocabulary, so text the run never
    saw may split differently."""
    used = {i for ids, _ in tok.encode_batch_words([s.words for s in sentences]) for i in ids}
    small, keep = tok.keep_only(used)
    log(f"--trim-vocab: {len(keep)} of {len(tok)} pieces kept (the ones the run's files use)")
    return small


def prepare(cfg, log):
    """Read the data, build the tokenizer and the model, cut every sentence into windows."""
    read = lambda items: {lang: read_conll(p, lang, cfg.encoding, scheme="IOB1") for lang, p in items}
    train_sets, dev_sets, test_sets = read(cfg.train), read(cfg.dev), read(cfg.test)
    if cfg.max_sentences:  # a fixed, seed-independent subsample: the first N sentences of each file
        train_sets = {k: v[: cfg.max_sentences] for k, v in train_sets.items()}
    train_sentences = [s for v in train_sets.values() for s in v]
    labels = build_label_list(train_sentences)
    for sets in (dev_sets, test_sets):  # a tag training never saw would be scored but never predicted
        for v in sets.values():
            check_labels(v, labels, strict=False)
    unlabeled = [s for lang, p in cfg.unlabeled for s in read_text(p, lang, cfg.encoding)]
    for lang, path in cfg.unlabeled:  # the auxiliary batches cycle over this text: none would never end
        if not any(s.source == str(path) for s in unlabeled):
            raise DataError(f"{path}: no text in this --unlabeled file (expected one sentence per line)")
    languages = sorted({s.lang for s in train_sentences} | {s.lang for s in unlabeled})
    # a folder, or a hub id fetched once into the Hugging Face cache (hub.py)
    folder = hub.model_folder(cfg.model, cfg.revision or None, log) if cfg.model else None
    tok = build_tokenizer(cfg, folder, train_sentences)
    if cfg.trim_vocab:
        everything = train_sentences + unlabeled + [s for sets in (dev_sets, test_sets) for v in sets.values() for s in v]
        tok = trim_vocabulary(tok, everything, log)
    model = build_model(cfg, folder, tok, labels, languages, log)
    # language ids: the LI head's languages first; dev/test-only languages after them (never an LI target)
    others = sorted({lang for lang, _ in cfg.dev + cfg.test} - set(languages))
    lang_ids = {l: i for i, l in enumerate(languages + others)}
    how = Windowing(cfg.max_len, cfg.overlap, tok.metaspace_id if cfg.label_piece == "content" else None)
    enc = lambda s: encode_sentences(s, tok, {l: i for i, l in enumerate(labels)}, lang_ids, how)
    # dev/test windows need a label id for every word: unknown tags become "O" there, while the
    # scorer keeps the original tags (such entities count as missed)
    held_out = lambda sets: {k: (v, enc(unknown_tags_to_o(v, labels))) for k, v in sets.items()}
    train = enc(train_sentences)
    return Prepared(tok=tok, model=model, labels=labels, train=train,
                    unlabeled=enc(unlabeled) if unlabeled else [], dev=held_out(dev_sets),
                    test=held_out(test_sets), n_train_sentences=len(train_sentences),
                    n_labelled=[sum(l != IGNORE_INDEX for l in w.labels) for w in train])


# ---------------------------------------------------------------------------------------------
# the optimizer, its schedule, and everything --resume restores


def get_lr(step, total, cfg, peak=None):
    """Linear warmup to the peak (cfg.lr unless given) over the first `warmup` fraction of steps, then
    linear decay to 0 (Devlin et al.'s fine-tuning schedule); or the peak throughout (schedule
    "constant": the paper's letter, which names only the learning rate)."""
    peak = cfg.lr if peak is None else peak
    if cfg.schedule == "constant":
        return peak
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def peak_lrs(cfg):
    """The peak learning rate of each of make_optimizer's parameter groups, in their order."""
    return [cfg.lr, cfg.lr] + ([cfg.head_lr, cfg.head_lr] if cfg.head_lr else [])


def make_optimizer(model, cfg):
    """AdamW over the trainable parameters only; no weight decay on biases and LayerNorm weights.
    Groups: the encoder's matrices, its vectors, then (with --head-lr) the heads' matrices and
    vectors, which the schedule drives from cfg.head_lr instead of cfg.lr (peak_lrs)."""
    groups = []
    for is_head in ([False, True] if cfg.head_lr else [False]):
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            # frozen tensors never enter the optimizer (no state, no update)
            if p.requires_grad and (not cfg.head_lr or is_head != name.startswith("bert.")):
                (no_decay if p.ndim < 2 else decay).append(p)
        groups += [{"params": decay, "weight_decay": cfg.weight_decay},
                   {"params": no_decay, "weight_decay": 0.0}]
    # fused: one vectorised kernel over all tensors instead of ~10 elementwise passes per tensor;
    # the same update up to rounding, several times faster on CPU and GPU
    device = next(model.parameters()).device.type
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, **fused)


class TrainerState:
    """Everything --resume needs besides the weights, saved and restored here only: how far the run
    is, its best epoch so far, the per-epoch history, the optimizer's moments, the loss scaler and
    every random generator (batch order, cloze masks, target-text order, dropout)."""

    def __init__(self, optimizer, scaler, generators, threads=0):
        self.epoch, self.step, self.best_f1, self.best_epoch, self.history = 0, 0, -1.0, 0, []
        self.optimizer, self.scaler, self.generators, self.threads = optimizer, scaler, generators, threads

    def state_dict(self):
        return dict(epoch=self.epoch, step=self.step, best_f1=self.best_f1, best_epoch=self.best_epoch,
                    history=self.history, threads=self.threads,
                    optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                    generators={k: g.get_state() for k, g in self.generators.items()},
                    torch_rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

    def load_state_dict(self, d):
        self.epoch, self.step, self.best_f1, self.best_epoch = d["epoch"], d["step"], d["best_f1"], d["best_epoch"]
        self.history, self.threads = d["history"], d.get("threads", self.threads)
        self.optimizer.load_state_dict(d["optimizer"])
        self.scaler.load_state_dict(d["scaler"])
        for k, g in self.generators.items():
            g.set_state(d["generators"][k])
        torch.set_rng_state(d["torch_rng"])
        if d["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(d["cuda_rng"])


@dataclass
class Loop:
    """One run's moving parts, handed whole to each piece of the loop (train_step, end_of_epoch,
    test_best) instead of seven to ten positional parts of it."""
    cfg: TrainConfig
    run: Prepared
    model: NERModel
    net: torch.nn.Module   # the model, or its DistributedDataParallel wrapper
    state: TrainerState
    how: Inference         # device, precision, evaluation batch and the frozen-prefix cache
    log: object
    total: int = 0         # the schedule's length in steps
    progress: object = None


def open_run_folder(cfg, rank, log):
    """Start, continue or refuse the run in cfg.out; returns the resume point (or None).

    A folder holding a run is never reused silently: --resume continues it (after putting back
    what a killed run left half done, and only with the same settings and data), --overwrite
    deletes it, anything else is refused."""
    out = Path(cfg.out)
    if runs.holds_a_run(out) and not (cfg.resume or cfg.overwrite):
        raise runs.RunError(f"{out} already holds a run: pass --resume to continue it, --overwrite to "
                            f"delete it and start afresh, or another --out")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        # --overwrite deletes nothing yet: the old run is set aside only at the first checkpoint
        for note in runs.recover(out) if cfg.resume or cfg.overwrite else []:
            log(f"{out}: {note}")
    barrier()  # the other processes read the folder once rank 0 has tidied it
    point = runs.resume_point(out, cfg.resume, "results.json", log)
    if cfg.resume and point is None and rank == 0:
        runs.clear_run(out)  # killed during its first epoch: what it left is of no use
    if point is not None:
        saved = point[0]  # a setting added after the run was saved: it ran with the default
        saved = dict(saved, config={**run_info(TrainConfig())["config"], **saved["config"]})
        runs.compare_runs(saved, run_info(cfg), cfg.allow_change, out)
    return point


# ---------------------------------------------------------------------------------------------
# the pieces of one step


def process_share(batch_index, rank, world):
    """This process's windows of a global batch and the weight of their NER loss.

    Every process takes every world-th window. A batch smaller than the number of processes (the
    epoch's last, say) leaves some process nothing, yet each must run forward and backward, or the
    others would wait forever in DDP's gradient all-reduce: that process runs a stand-in window
    (the batch's first) whose NER loss counts with weight 0."""
    share = batch_index[rank::world]
    return (share, 1.0) if share else (batch_index[:1], 0.0)


def aux_batches(windows, size, cfg, pad_id, generator):
    """Batches of unlabeled target text without end, one per NER micro-batch: pass after pass over
    the target windows, reshuffled each time (the target text need not match the NER data in size)."""
    while True:
        for index in batch_indices([len(w.input_ids) for w in windows], size, bucket=cfg.bucket,
                                   generator=generator):
            yield collate([windows[i] for i in index], pad_id, index)


def aux_losses(model, batch, cfg, tok, gen, source_languages=None):
    """LI / CL / PC losses on one batch of unlabeled target text (paper, "Multi-task Learning").
    source_languages: (language logits, language ids) of the labelled windows of the same step,
    more LI examples (--li-on all); LI averages over all its examples, as the paper's 1/N_U."""
    losses = {}
    ids, mask = batch.input_ids, batch.attention_mask
    masked, targets = ids, None
    if "CL" in cfg.aux:  # random cloze: 15% of pieces, BERT's 80/10/10
        masked, targets = cloze_mask(ids, mask, MaskVocab.of(tok), cfg.mask_p, gen)
    elif "PC" in cfg.aux:  # predictive cloze: mask what the current NER model calls an entity
        was_training = model.training
        model.eval()  # decode deterministically, as the model would at test time
        with torch.no_grad():
            predicted = model.predict(ids, mask)
        model.train(was_training)
        masked, targets = predictive_cloze_mask(ids, batch.word_ids, batch.is_first, predicted,
                                                model.labels, tok.mask_token_id)
    h = model.encode(masked, mask)  # one pass serves the cloze head and, on [CLS], language ID
    if targets is not None:
        losses["cloze"] = cloze_loss(model.cloze_logits(h, targets), targets)
    if "LI" in cfg.aux:  # [CLS] is never masked, so LI reads the same pass
        logits, languages = model.language_logits(h).float(), batch.lang_ids
        if source_languages is not None:
            logits = torch.cat([logits, source_languages[0].float()])
            languages = torch.cat([languages, source_languages[1]])
        losses["li"] = torch.nn.functional.cross_entropy(logits, languages)
    return losses


def train_step(loop, batch_index, aux):
    """One optimizer step on a global batch; returns its loss, or None (and no update) if not finite.

    "Accumulation done right": every micro-batch's NER loss is summed over its labelled pieces and
    divided by the labelled pieces of the WHOLE global batch, so the update equals one big batch's
    whatever --grad-accum and the number of processes (x world, because DDP averages the processes'
    gradients where we want their sum). Summed, a micro-batch without a labelled piece (every
    word's first piece in another window) adds 0 rather than the NaN of an empty mean."""
    cfg, run, model, net, state, how = loop.cfg, loop.run, loop.model, loop.net, loop.state, loop.how
    device, dtype, cache = how.device, how.dtype, how.cache
    rank, world = rank_and_world()
    share, weight = process_share(batch_index, rank, world)
    micro_size = math.ceil(cfg.batch_size / (world * cfg.grad_accum))
    micro_batches = [share[j:j + micro_size] for j in range(0, len(share), micro_size)]
    n_labelled = sum(run.n_labelled[i] for i in batch_index)
    step_loss = 0.0
    for j, index in enumerate(micro_batches):
        batch = collate([run.train[i] for i in index], run.tok.pad_token_id, index).to(device)
        sync = net.no_sync() if world > 1 and j < len(micro_batches) - 1 else nullcontext()
        with sync, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            prefix = cache.prefix(model, batch, "train") if cache else None
            # --li-on all: the labelled windows' [CLS] are LI examples too (a stand-in window is not)
            source_li = "LI" in cfg.aux and cfg.li_on == "all" and weight > 0
            out = net(batch.input_ids, batch.attention_mask, prefix, languages=source_li)
            logits, source_languages = out if source_li else (out, None)
            loss = ner_loss(logits, batch.labels, reduction="sum") * (weight * world / max(n_labelled, 1))
            if aux is not None:  # auxiliary losses on target text: mean over the micro-batches
                extra = (source_languages, batch.lang_ids) if source_li else None
                loss = loss + sum(aux_losses(model, next(aux), cfg, run.tok, state.generators["mask"],
                                             extra).values()) / len(micro_batches)
            if not all_finite(loss):  # every process must agree, or one would skip an all-reduce
                state.optimizer.zero_grad(set_to_none=True)
                return None
            state.scaler.scale(loss).backward()
        step_loss += loss.item() / world
    optimizer_step(state.optimizer, state.scaler, cfg.clip)
    return sum_over_processes(step_loss)  # the global batch's loss, not this process's share


def optimizer_step(optimizer, scaler, clip):
    """The update once the gradients are in: unscale them (so clipping sees their true norm), clip
    their global norm to `clip` (0: no clipping, the paper's letter), step (with fp16 the scaler skips
    a step whose gradients overflowed, and lowers its scale), update the scale, clear the gradients.
    Training, pretraining and the benchmark all update through this one function."""
    scaler.unscale_(optimizer)
    if clip > 0:  # clip_grad_norm_ with 0 would scale every gradient to zero: no update at all
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


class Progress:
    """A progress line every ~10 s with the whole run's ETA: the steps left, the dev evaluations
    left and the final test, each at the speed measured so far."""

    def __init__(self, log, cfg, run, state, steps_per_epoch):
        self.log, self.cfg, self.steps_per_epoch = log, cfg, steps_per_epoch
        self.steps_left = (cfg.epochs - state.epoch) * steps_per_epoch
        self.step_seconds, self.eval_seconds_per_window, self.last_line = [], None, 0.0
        self.dev_windows = sum(len(w) for _, w in run.dev.values())
        self.test_windows = sum(len(w) for _, w in run.test.values())

    def evaluated(self, seconds):
        self.eval_seconds_per_window = seconds / max(1, self.dev_windows)

    def eta(self):
        per_step = sum(self.step_seconds[-50:]) / max(1, len(self.step_seconds[-50:]))
        per_window = self.eval_seconds_per_window  # before the first evaluation: a forward pass costs
        if per_window is None:                     # about a third of a training step's window
            per_window = per_step / self.cfg.batch_size / 3
        epochs_left = math.ceil(self.steps_left / self.steps_per_epoch)
        return self.steps_left * per_step + (epochs_left * self.dev_windows + self.test_windows) * per_window

    def step(self, epoch, s, loss, lr, seconds):
        self.step_seconds.append(seconds)
        self.steps_left -= 1
        if time.time() - self.last_line > 10 or s + 1 == self.steps_per_epoch:
            self.last_line = time.time()
            self.log(f"epoch {epoch + 1}/{self.cfg.epochs} step {s + 1}/{self.steps_per_epoch} loss "
                     f"{loss:.4f} lr {lr:.2e} | run ETA {format_seconds(self.eta())}")


def format_seconds(s):
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


# ---------------------------------------------------------------------------------------------
# the run


def train(cfg):
    """Train one seed; returns the final record (best epoch, dev and test F1 per language)."""
    loop = start(cfg)  # the run folder, the data, the model and optimizer: everything used below
    cfg, run, state, log = loop.cfg, loop.run, loop.state, loop.log
    started = time.time()
    for epoch in range(state.epoch, cfg.epochs):
        loop.net.train()
        t0, losses, skipped, in_a_row = time.time(), [], 0, 0
        aux = aux_batches(run.unlabeled, math.ceil(cfg.batch_size / (rank_and_world()[1] * cfg.grad_accum)), cfg,
                          run.tok.pad_token_id, state.generators["aux"]) if cfg.aux else None
        batches = batch_indices([len(w.input_ids) for w in run.train], cfg.batch_size, shuffle=True,
                                bucket=cfg.bucket, generator=state.generators["data"])
        for s, batch_index in enumerate(batches):
            t_step = time.time()
            lr = get_lr(state.step, loop.total, cfg)
            for g, peak in zip(state.optimizer.param_groups, peak_lrs(cfg), strict=True):
                g["lr"] = get_lr(state.step, loop.total, cfg, peak)  # the heads from --head-lr's height
            loss = train_step(loop, batch_index, aux)
            state.step += 1  # the schedule counts batches, updated or not
            if loss is None:  # not finite: no update; many in a row is divergence
                skipped, in_a_row = skipped + 1, in_a_row + 1
                if in_a_row >= 10:
                    raise diverged(in_a_row, epoch, s, cfg)
                continue
            in_a_row = 0
            losses.append(loss)
            loop.progress.step(epoch, s, sum(losses) / len(losses), lr, time.time() - t_step)
        t_eval = time.time()
        end_of_epoch(loop, dict(epoch=epoch + 1, train_loss=sum(losses) / len(losses) if losses else None,
                                skipped_steps=skipped, lr=lr, seconds=round(time.time() - t0, 2)))
        loop.progress.evaluated(time.time() - t_eval)
        # time-boxing: stop after --stop-after epochs, or when another epoch would overrun --minutes
        out_of_time = cfg.minutes and time.time() - started + (time.time() - t0) > cfg.minutes * 60
        if epoch + 1 < cfg.epochs and (out_of_time or (cfg.stop_after and epoch + 1 >= cfg.stop_after)):
            log(f"stopping after epoch {epoch + 1} ({'--minutes' if out_of_time else '--stop-after'}); "
                f"continue with the same command + --resume")
            return dict(stopped=True, epoch=state.epoch, best_epoch=state.best_epoch, best_f1=state.best_f1)
    return test_best(loop)


def start(cfg):
    """Everything the loop needs, as a Loop: the run folder opened (or resumed), threads and precision
    chosen, the data read and windowed, the model built or loaded, the optimizer and its state."""
    check_config(cfg)
    rank, world, device = setup_distributed(cfg.device)
    quiet = cfg.quiet or rank != 0  # under torchrun only rank 0 talks, logs and saves
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    precision, dtype = resolve_precision(cfg.precision, device)
    keep_freed_memory()
    point = open_run_folder(cfg, rank, log)
    # the thread count changes the order of floating-point sums: a resumed run keeps the one it began
    # with (the default, 0, takes the cores idle now, which a later resume need not find again)
    threads = set_threads(cfg.threads or (point[1].get("threads", 0) if point is not None else 0))
    if cfg.model and rank == 0:  # a hub id is downloaded by one process while the others wait
        hub.model_folder(cfg.model, cfg.revision or None, log)
    barrier()
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    random.seed(cfg.seed)
    run = prepare(cfg, log)
    model = run.model.to(device)
    # DDP all-reduces gradients during backward; frozen tensors (requires_grad=False) are
    # neither hooked nor all-reduced, so --frz needs no find_unused_parameters.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    state = TrainerState(make_optimizer(model, cfg),
                         # fp16 needs loss scaling against underflow; for bf16 and fp32 it does nothing
                         torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
                         dict(data=torch.Generator().manual_seed(cfg.seed),  # batch order: same everywhere
                              mask=torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * rank),
                              aux=torch.Generator().manual_seed(cfg.seed + 2 + 1000 * rank)), threads)
    if point is not None:
        runs.load_weights_into(model, Path(cfg.out) / "last")
        state.load_state_dict(point[1])
        if rank == 0:  # the log as of the checkpoint: a run killed before writing it loses no line
            runs.write_log(cfg.out, state.history, run.dev.keys())
        log(f"resumed {cfg.out} after epoch {state.epoch}")
    steps_per_epoch = math.ceil(len(run.train) / cfg.batch_size)
    # the schedule's length: the batches done plus those left. For an unchanged run that is epochs x
    # steps_per_epoch; after a deliberate change of --epochs or of the data on --resume
    # (--allow-change) the decay stretches to the new end instead of leaving lr at 0
    total = state.step + (cfg.epochs - state.epoch) * steps_per_epoch
    log(f"{run.n_train_sentences} training sentences -> {len(run.train)} windows of <= {cfg.max_len} "
        f"pieces; {steps_per_epoch} steps/epoch; precision {precision} on {device}"
        f"{f' x {world} processes' if world > 1 else ''}; #frz {cfg.frz}; aux {'+'.join(cfg.aux) or 'none'}")
    if not run.dev:
        log("no --dev data: nothing to select on, so the LAST epoch's model is kept as best/")
    cache = PrefixCache(cfg.cache_gb) if cfg.frz >= 0 and cfg.cache_frozen else None
    return Loop(cfg, run, model, net, state, Inference(run.tok.pad_token_id, device, dtype, cfg.eval_batch_size, cache),
                log, total, Progress(log, cfg, run, state, steps_per_epoch))


def diverged(steps, epoch, s, cfg):
    """fp16 overflow is the GradScaler's business; a loss that stays NaN/inf means training diverged."""
    where = Path(cfg.out) / "last"
    keep = f"The last good checkpoint is {where}." if where.is_dir() else "No checkpoint was written yet."
    return FloatingPointError(f"the loss was NaN/inf for {steps} steps in a row (epoch {epoch + 1}, step "
                              f"{s + 1}); stopping. {keep} Try a lower --lr or --precision fp32.")


def end_of_epoch(loop, record):
    """Evaluate every dev set, keep the best model, checkpoint, and log the epoch.

    Model selection (paper: "the model with the best F1 on the development set"): the F1 of all dev
    sentences pooled; in zero-shot, of the target languages' dev sets only. No dev set: the last epoch."""
    cfg, run, model, state, log = loop.cfg, loop.run, loop.model, loop.state, loop.log
    if record["train_loss"] is None:
        log(f"epoch {record['epoch']}: no step had a finite loss ({record['skipped_steps']} skipped)")
    dev, tags = {}, {}
    for lang, (sentences, windows) in run.dev.items():
        dev[lang], tags[lang] = evaluate(model, sentences, windows, loop.how, f"dev-{lang}")
    targets = [l for l in cfg.target if l in run.dev] or list(run.dev)
    pooled = score([s.tags for l in targets for s in run.dev[l][0]], [t for l in targets for t in tags[l]]) \
        if dev else None
    selection = pooled.f1 if pooled else None  # no dev set: nothing to select on
    state.epoch = record["epoch"]
    if selection is None or selection > state.best_f1:
        state.best_f1, state.best_epoch = (selection if pooled else state.best_f1), state.epoch
    state.history.append(dict(record, selection_f1=selection, best_epoch=state.best_epoch,
                              dev={l: dict(f1=d.f1, precision=d.precision, recall=d.recall) for l, d in dev.items()}))
    log(f"epoch {state.epoch}: " + ("dev F1 " + " ".join(f"{l} {d.f1 * 100:.2f}" for l, d in dev.items())
                                    if dev else "no dev data")
        + (f" | selection ({'+'.join(targets)}) {selection * 100:.2f}" if pooled else "")
        + f" | {record['seconds']:.0f} s training")
    if rank_and_world()[0] == 0:
        if cfg.overwrite and len(state.history) == 1:  # the first checkpoint of a run that replaces one
            runs.set_aside(cfg.out)
        runs.save_epoch(cfg.out, model, run.tok, state.state_dict(), run_info(cfg),
                        is_best=state.best_epoch == state.epoch)
        runs.write_log(cfg.out, state.history, run.dev.keys())
        runs.drop_set_aside(cfg.out)
    barrier()  # the others wait until rank 0 has written the checkpoint


def test_best(loop):
    """Score the best epoch's model on every test set; say where it is and how to use it."""
    cfg, run, model, state, log = loop.cfg, loop.run, loop.model, loop.state, loop.log
    best = Path(cfg.out) / "best"
    runs.load_weights_into(model, best)
    results = dict(seed=cfg.seed, best_epoch=state.best_epoch, best_dev_f1=state.best_f1 if run.dev else None,
                   test={})
    for lang, (sentences, windows) in run.test.items():
        s, _ = evaluate(model, sentences, windows, replace(loop.how, cache=None))  # best/'s weights: no stale cache
        results["test"][lang] = s.f1
        log(f"\n== test {lang} (best epoch {state.best_epoch}) ==\n{format_report(s)}")
    if rank_and_world()[0] == 0:
        write_json(Path(cfg.out) / "results.json", results)
    chosen = f"dev F1 {state.best_f1 * 100:.2f}" if run.dev else "the last epoch: no dev data"
    log(f"\nbest model: {best} (epoch {state.best_epoch}, {chosen})\ntag text with it:\n"
        f"  python -m minibert_ner.predict --model {cfg.out} \"Angela Merkel besuchte Paris .\"")
    return results


def report_seeds(results):
    """Mean ± sd over seeds of best dev F1 and of test F1 per language, as a small table."""
    import statistics

    def cell(values):  # one seed has no spread to show
        values = [v * 100 for v in values]
        if len(values) == 1:
            return f"{values[0]:6.2f}"
        return f"{statistics.mean(values):6.2f} ± {statistics.stdev(values):4.2f}"
    langs = sorted({l for r in results for l in r["test"]})
    lines = [f"over {len(results)} seeds ({', '.join(str(r['seed']) for r in results)}):" if len(results) > 1
             else f"seed {results[0]['seed']}:"]
    if all(r["best_dev_f1"] is not None for r in results):
        lines.append(f"  best dev F1 (selection)  {cell([r['best_dev_f1'] for r in results])}")
    lines += [f"  test F1 {l:<16} {cell([r['test'][l] for r in results])}" for l in langs]
    return "\n".join(lines)


def main(argv=None):
    from .cli import build_parser, configs_from_args, run_command
    from .distributed import shutdown

    def body(args):
        results = [train(c) for c in configs_from_args(args)]
        if not any(r.get("stopped") for r in results) and rank_and_world()[0] == 0:
            print(report_seeds(results))
        shutdown()
        return 0
    args = build_parser().parse_args(argv)
    return run_command(lambda: body(args), getattr(args, "debug", False),
                       on_interrupt="the last finished epoch is kept: the same command with --resume continues")


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module; call the package's copy,
    # whose classes (TrainConfig, ConfigError, ...) are the ones the rest of the library knows
    import minibert_ner.train
    sys.exit(minibert_ner.train.main())
