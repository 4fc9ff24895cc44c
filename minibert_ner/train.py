"""Fine-tune one NER model on many languages at once: the hand-written training loop.

    python -m minibert_ner.train                      # a 2-minute demo on the bundled sample
    python -m minibert_ner.train --help               # every option, explained

The recipe is the paper's ("Data and Experimental Setup", "Experiment details"): mBERT + a linear
layer per word piece, IOB1 tags on first pieces, AdamW at lr 5e-5, batch 32, 20 epochs, inputs of
at most 64 pieces cut into windows overlapping by 8, languages mixed at random each epoch, the
model chosen by best dev F1. Zero-shot: train on some languages, select and test on another.
#frz freezes the embeddings and the lowest k layers; LI / CL / PC add auxiliary losses computed on
unlabeled target-language text, summed with the NER loss.

The loop, top to bottom: set lr -> autocast forward -> loss / tokens of the accumulation window
-> scaler.scale(loss).backward() -> at the window's end: unscale_, clip, step, update, zero_grad.
One code path serves fp32, bf16 and fp16 (the GradScaler is a no-op unless fp16).
Left out: trainer frameworks, callbacks, early stopping (the paper trains all 20 epochs).
"""
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel

from .data import build_label_list, check_labels, read_conll, read_text, unknown_tags_to_o
from .distributed import all_finite, barrier, gather_dicts, rank_and_world, setup_distributed, shutdown, \
    sum_over_processes
from .heads import PrefixCache, cloze_loss, ner_loss
from .runs import build_model_and_tokenizer, load_run, report_seeds, save_run, write_log
from .scoring import format_report, score
from .windows import IGNORE_INDEX, batch_indices, cloze_mask, collate, encode_sentences, \
    merge_predictions, predictive_cloze_mask


@dataclass
class TrainConfig:
    """Every knob of a run; the command line in cli.py fills it. Defaults are the paper's."""

    model: str = ""              # pretrained model folder; "" = a small random BERT (demo)
    train: list = field(default_factory=list)      # [(lang, path)]
    dev: list = field(default_factory=list)
    test: list = field(default_factory=list)
    unlabeled: list = field(default_factory=list)  # [(lang, path)] raw target text for LI/CL/PC
    target: list = field(default_factory=list)     # zero-shot target languages
    aux: list = field(default_factory=list)        # any of "LI", "CL", "PC"
    frz: int = -1
    lr: float = 5e-5
    batch_size: int = 32
    grad_accum: int = 1
    epochs: int = 20
    max_len: int = 64
    overlap: int = 8
    mask_p: float = 0.15
    warmup: float = 0.1          # fraction of steps with linearly rising lr
    weight_decay: float = 0.01
    clip: float = 1.0
    precision: str = "auto"      # fp32 | bf16 | fp16 | auto (bf16/fp16 on CUDA, fp32 on CPU)
    device: str = "auto"
    threads: int = 0             # CPU threads for PyTorch; 0 = its default (one per core)
    seed: int = 1
    out: str = "runs/demo"
    lowercase: bool = False      # True only for uncased vocabularies (e.g. MiniLM)
    encoding: str = "utf-8"
    # Random batches (plain SGD sampling): length-bucketed ones pad less, but after one
    # CoNLL-2003 epoch they scored ~1 F1 lower (3 seeds, README "Performance"), and the packed
    # layers (model.Unpadded) skip random batches' padding anyway. True = length-bucketed.
    bucket: bool = False
    cache_frozen: bool = True    # with frz >= 0, compute the frozen layers once and reuse them
    cache_gb: float = 4.0        # memory budget of that cache
    max_sentences: int = 0       # subsample each training file (0 = all): small experiments
    stop_after: int = 0          # stop after this many epochs (0 = never): resumable time-boxing
    eval_batch_size: int = 128
    tiny: dict = field(default_factory=dict)  # shape of the random demo BERT
    dropout: float = -1.0        # >= 0 overrides the checkpoint's dropout probabilities
    resume: bool = False
    quiet: bool = False


# ---------------------------------------------------------------------------------------------
# the pieces of one step


def get_lr(step, total, cfg):
    """Linear warmup to cfg.lr over the first `warmup` fraction of steps, then linear decay to 0."""
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (total - step) / max(1, total - warm))


def make_optimizer(model, cfg):
    """AdamW over the trainable parameters only; no weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:  # frozen tensors never enter the optimizer (no state, no update)
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # fused: one vectorised kernel over all tensors instead of ~10 elementwise passes per tensor;
    # the same update up to rounding, several times faster on CPU and GPU
    device = next(model.parameters()).device.type
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, **fused)


def resolve_precision(cfg, device):
    """'auto' -> bf16 on GPUs that have it, else fp16 on CUDA; fp32 on CPU."""
    p = cfg.precision
    if p == "auto":
        p = "fp32" if device.type != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    if p == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs CUDA (and a GradScaler); on CPU use --precision bf16 or fp32")
    return p, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


def aux_losses(model, batch, cfg, tok, gen):
    """LI / CL / PC losses on one batch of unlabeled target text (paper, "Multi-task Learning")."""
    losses = {}
    ids, mask = batch.input_ids, batch.attention_mask
    masked, targets = ids, None
    if "CL" in cfg.aux:  # random cloze: 15% of pieces, BERT's 80/10/10
        specials = [tok.cls_token_id, tok.sep_token_id, tok.pad_token_id]
        masked, targets = cloze_mask(ids, mask, specials, tok.mask_token_id, len(tok), cfg.mask_p, gen)
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
        losses["li"] = torch.nn.functional.cross_entropy(model.language_logits(h).float(), batch.lang_ids)
    return losses


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def predict_windows(model, windows, pad_id, device, dtype, batch_size, cache=None, name="eval"):
    """Label id per position for every window, in the windows' order. Under torchrun each process
    predicts every world_size-th window and the predictions are gathered, so each is made once.
    `cache`: a PrefixCache; with #frz >= 0 the frozen part then runs once per window and `name`."""
    model.eval()
    rank, world = rank_and_world()
    mine = list(range(rank, len(windows), world))
    out = {}
    order = batch_indices([len(windows[i].input_ids) for i in mine], batch_size, shuffle=False)
    for index in order:  # sorted by length: little padding
        index = [mine[j] for j in index]
        batch = collate([windows[i] for i in index], pad_id, index).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            prefix = cache.prefix(model, batch, name) if cache else None
            pred = model.predict(batch.input_ids, batch.attention_mask, prefix).cpu()
        for row, i in zip(pred, index):
            out[i] = row[: len(windows[i].input_ids)].tolist()
    out = gather_dicts(out)
    return [out[i] for i in range(len(windows))]


def evaluate(model, sentences, windows, pad_id, device, dtype, batch_size=128, cache=None, name="eval"):
    """Tag every word of every sentence (one tag per word, windows merged) and score by conlleval."""
    preds = predict_windows(model, windows, pad_id, device, dtype, batch_size, cache, name)
    tags = [[model.labels[i] for i in s] for s in merge_predictions(windows, preds, sentences)]
    return score([s.tags for s in sentences], tags), tags


# ---------------------------------------------------------------------------------------------
# the run


def prepare(cfg, log):
    """Read data, build (or load) tokenizer and model: everything the loop needs."""
    read = lambda items: {lang: read_conll(p, lang, cfg.encoding, scheme="IOB1") for lang, p in items}
    train_sets, dev_sets, test_sets = read(cfg.train), read(cfg.dev), read(cfg.test)
    if cfg.max_sentences:  # a fixed, seed-independent subsample: the first N sentences of each file
        train_sets = {k: v[: cfg.max_sentences] for k, v in train_sets.items()}
    train_sentences = [s for v in train_sets.values() for s in v]
    labels = build_label_list(train_sentences)
    for sets in (dev_sets, test_sets):  # a tag training never saw would be scored but never predicted
        for v in sets.values():
            check_labels(v, labels, strict=False)
    unlabeled = [s for lang, p in cfg.unlabeled for s in read_text(p, lang)]
    languages = sorted({s.lang for s in train_sentences} | {s.lang for s in unlabeled})
    tok, model = build_model_and_tokenizer(cfg, labels, languages, train_sentences, log)
    # language ids: the LI head's languages first; dev/test-only languages after them (never an LI target)
    others = sorted({s[0] for s in cfg.dev + cfg.test} - set(languages))
    lang_ids = {l: i for i, l in enumerate(languages + others)}
    enc = lambda s: encode_sentences(s, tok, {l: i for i, l in enumerate(labels)}, lang_ids,
                                     cfg.max_len, cfg.overlap)
    # evaluation never needs a tag it cannot predict: unknown tags in dev/test are kept for the
    # scorer (they count as missed entities) but mapped to "O" for the windows' label ids
    safe = lambda v: unknown_tags_to_o(v, labels)
    return dict(tok=tok, model=model, labels=labels, languages=languages,
                train=enc(train_sentences), unlabeled=enc(unlabeled) if unlabeled else [],
                dev={k: (v, enc(safe(v))) for k, v in dev_sets.items()},
                test={k: (v, enc(safe(v))) for k, v in test_sets.items()},
                n_train_sentences=len(train_sentences))


def train(cfg):
    """Train one seed; returns the final record (best epoch, dev and test F1 per language)."""
    rank, world, device = setup_distributed(cfg.device)
    quiet = cfg.quiet or rank != 0  # under torchrun only rank 0 talks, logs and saves
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    precision, dtype = resolve_precision(cfg, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    random.seed(cfg.seed)
    run = prepare(cfg, log)
    model, tok, windows = run["model"].to(device), run["tok"], run["train"]
    # DDP all-reduces gradients during backward; frozen tensors (requires_grad=False) are
    # neither hooked nor all-reduced, so --frz needs no find_unused_parameters.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    n_labelled = [sum(l != IGNORE_INDEX for l in w.labels) for w in windows]
    steps_per_epoch = math.ceil(len(windows) / cfg.batch_size)
    # each process takes 1/world of every global batch, split into grad_accum micro-batches
    micro_size = math.ceil(cfg.batch_size / (world * cfg.grad_accum))
    total = steps_per_epoch * cfg.epochs
    optimizer = make_optimizer(model, cfg)
    # fp16 needs loss scaling against underflow; for bf16 and fp32 the scaler does nothing
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    data_gen = torch.Generator().manual_seed(cfg.seed)  # batch order: the same in every process
    mask_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * rank)  # cloze masks
    aux_gen = torch.Generator().manual_seed(cfg.seed + 2 + 1000 * rank)  # order of the target text
    state = dict(epoch=0, step=0, best_f1=-1.0, best_epoch=0, history=[])
    if cfg.resume:
        state = load_run(cfg.out, model, optimizer, scaler, data_gen, mask_gen, device, aux_gen=aux_gen)
        log(f"resumed from {cfg.out}/last after epoch {state['epoch']}")
    log(f"{run['n_train_sentences']} training sentences -> {len(windows)} windows of <= {cfg.max_len} "
        f"pieces; {steps_per_epoch} steps/epoch; precision {precision} on {device}"
        f"{f' x {world} processes' if world > 1 else ''}; #frz {cfg.frz}; aux {'+'.join(cfg.aux) or 'none'}")
    targets_dev = [l for l in cfg.target if l in run["dev"]] or list(run["dev"])
    aux_windows = run["unlabeled"]
    bad_steps = 0
    cache = PrefixCache(cfg.cache_gb) if cfg.frz >= 0 and cfg.cache_frozen else None

    for epoch in range(state["epoch"], cfg.epochs):
        net.train()
        t0, seen, running, aux_order = time.time(), 0, 0.0, []
        batches = batch_indices([len(w.input_ids) for w in windows], cfg.batch_size,
                                shuffle=True, bucket=cfg.bucket, generator=data_gen)
        for s, batch_index in enumerate(batches):
            # The same global batches whatever grad_accum and the number of processes are: this
            # process takes every world-th window of it and splits its share into micro-batches.
            share = batch_index[rank::world] or batch_index[:1]  # an empty share still joins the all-reduce
            weight = 1.0 if batch_index[rank::world] else 0.0
            group = [share[j:j + micro_size] for j in range(0, len(share), micro_size)]
            lr = get_lr(state["step"], total, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            # "accumulation done right": every micro-batch divides its summed loss by the number
            # of labelled pieces in the WHOLE global batch, so the update equals one big batch's
            # (x world because DDP averages the processes' gradients, where we want their sum)
            n_tokens = sum(n_labelled[i] for i in batch_index)
            step_loss, finite = 0.0, True
            for j, index in enumerate(group):
                batch = collate([windows[i] for i in index], tok.pad_token_id, index).to(device)
                sync = net.no_sync() if world > 1 and j < len(group) - 1 else nullcontext()
                with sync, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    prefix = cache.prefix(model, batch, "train") if cache else None
                    logits = net(batch.input_ids, batch.attention_mask, prefix)
                    n_here = (batch.labels != IGNORE_INDEX).sum()
                    loss = ner_loss(logits, batch.labels) * n_here * world * weight / max(n_tokens, 1)
                    if cfg.aux and aux_windows:
                        if not aux_order:  # cycle through the target text, reshuffled each pass
                            aux_order = batch_indices([len(w.input_ids) for w in aux_windows],
                                                      micro_size, bucket=cfg.bucket, generator=aux_gen)
                        ai = aux_order.pop()
                        ab = collate([aux_windows[i] for i in ai], tok.pad_token_id, ai).to(device)
                        loss = loss + sum(aux_losses(model, ab, cfg, tok, mask_gen).values()) / len(group)
                    finite = all_finite(loss)
                    if not finite:
                        break
                    scaler.scale(loss).backward()
                step_loss += loss.item() / world
            if not finite:
                # fp16 overflow is the scaler's business (it skips the step); a loss that stays
                # NaN/inf means training diverged: stop, leaving the last good checkpoint intact
                optimizer.zero_grad(set_to_none=True)
                bad_steps += 1
                if bad_steps >= 10:
                    raise FloatingPointError(
                        f"loss was NaN/inf for {bad_steps} steps in a row (epoch {epoch + 1}, step {s + 1}); "
                        f"stopping. The last good checkpoint is in {cfg.out}/last. Try a lower --lr "
                        f"or --precision fp32.")
                continue
            bad_steps = 0
            scaler.unscale_(optimizer)  # so clipping sees the true gradient norm
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            seen += len(batch_index)
            running += sum_over_processes(step_loss)  # the global batch's loss, not this share's
            if not quiet and (s % 20 == 0 or s == steps_per_epoch - 1):
                rate = seen / (time.time() - t0)
                eta = (steps_per_epoch - s - 1) * (time.time() - t0) / (s + 1)
                log(f"epoch {epoch + 1}/{cfg.epochs} step {s + 1}/{steps_per_epoch} loss {running / (s + 1):.4f} "
                    f"lr {lr:.2e} {rate:.0f} windows/s ETA {eta:.0f}s")

        # -- end of epoch: evaluate every dev set, keep the best model, log -------------------
        # Model selection (paper: "the model with the best F1 on the development set"): the F1 of
        # all dev sentences pooled; in zero-shot, of the target languages' dev sets only.
        dev, tags = {}, {}
        for lang, (sents, wins) in run["dev"].items():
            dev[lang], tags[lang] = evaluate(model, sents, wins, tok.pad_token_id, device, dtype,
                                             cfg.eval_batch_size, cache, f"dev-{lang}")
        pooled = score([s.tags for l in targets_dev for s in run["dev"][l][0]],
                       [t for l in targets_dev for t in tags[l]]) if dev else None
        sel = pooled.f1 if pooled else epoch  # no dev set: the last epoch counts as best
        record = dict(epoch=epoch + 1, train_loss=running / max(1, steps_per_epoch), lr=lr,
                      seconds=round(time.time() - t0, 2), selection_f1=sel,
                      dev={l: dict(f1=d.f1, precision=d.precision, recall=d.recall) for l, d in dev.items()})
        state["history"].append(record)
        log(f"epoch {epoch + 1}: dev F1 " + " ".join(f"{l} {d.f1 * 100:.2f}" for l, d in dev.items())
            + (f" | selection ({'+'.join(targets_dev)}) {sel * 100:.2f}" if pooled else ""))
        state["epoch"] = epoch + 1
        is_best = sel > state["best_f1"]
        if is_best:
            state["best_f1"], state["best_epoch"] = sel, epoch + 1
        if rank == 0:
            save_run(cfg, run, model, optimizer, scaler, data_gen, mask_gen, state, best=is_best,
                     aux_gen=aux_gen)
            write_log(cfg.out, record, state["history"], run["dev"].keys(), state["best_epoch"])
        barrier()  # the others wait until rank 0 has written the checkpoint
        if cfg.stop_after and epoch + 1 >= cfg.stop_after and epoch + 1 < cfg.epochs:
            log(f"stopping after epoch {epoch + 1} as asked; continue with --resume")
            return dict(stopped=True, **state)

    # -- test the best model on every test set ------------------------------------------------
    best = load_run(cfg.out, model, which="best", device=device)
    results = dict(seed=cfg.seed, best_epoch=state["best_epoch"], best_dev_f1=state["best_f1"], test={})
    for lang, (sents, wins) in run["test"].items():
        s, tags = evaluate(model, sents, wins, tok.pad_token_id, device, dtype, cfg.eval_batch_size)
        results["test"][lang] = s.f1
        log(f"\n== test {lang} (best epoch {best['epoch']}) ==\n{format_report(s)}")
    return results


def main(argv=None):
    from .cli import configs_from_argv
    cfgs = configs_from_argv(argv, TrainConfig)
    results = [train(c) for c in cfgs]
    if not any(r.get("stopped") for r in results) and rank_and_world()[0] == 0:
        print(report_seeds(results))
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
