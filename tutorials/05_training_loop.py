# %% [markdown]
# # 5. The training loop, line by line
#
# **What you will build:** the inner loop of `minibert_ner.train`, written out step by step on a
# tiny random BERT: AdamW with two parameter groups, warmup-then-decay learning rate, gradient
# clipping, mixed precision with `torch.autocast`, and the `GradScaler` that fp16 needs and bf16
# does not. You will watch the loss go down.
#
# **You need:** a PyTorch training loop (`loss.backward()`, `optimizer.step()`); chapter 4.
#
# **Time:** 20 minutes to read; runs in about 10 seconds on a laptop CPU.

# %%
import os
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
TINY = os.environ.get("MINIBERT_TUTORIAL_TINY") == "1"  # the test sets this: fewer steps
WORK = tempfile.TemporaryDirectory()  # every file we write goes here; deleted when Python exits
from minibert_ner.data import build_label_list, read_conll  # noqa: E402
from minibert_ner.heads import NERModel, ner_loss  # noqa: E402
from minibert_ner.model import BertConfig, BertModel  # noqa: E402
from minibert_ner.tokenizer import WordPieceTokenizer, train_vocab  # noqa: E402
from minibert_ner.train import TrainConfig, get_lr, make_optimizer  # noqa: E402
from minibert_ner.windows import batch_indices, collate, encode_sentences  # noqa: E402

torch.manual_seed(0)

# %% [markdown]
# ## Step 1: data and a tiny model
#
# Sentences from the bundled synthetic sample (five languages), a WordPiece vocabulary learnt
# from them, windows as in chapter 4, and a 2-layer BERT with hidden size 64, randomly initialised.

# %%
SAMPLE = REPO / "data" / "sample"
sentences = [s for lang in ("en", "de", "es", "nl", "ru") for s in read_conll(SAMPLE / lang / "train.txt", scheme="IOB1")[:60]]
words = [w for s in sentences for w in s.words]
tok = WordPieceTokenizer.from_file(train_vocab(words, 1000, Path(WORK.name) / "vocab.txt"))
labels = build_label_list(sentences)
windows = encode_sentences(sentences, tok, {t: i for i, t in enumerate(labels)},
                           {lang: i for i, lang in enumerate(["de", "en", "es", "nl", "ru"])})
config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=128, max_position_embeddings=64)
model = NERModel(BertModel(config), labels)
print(f"{len(windows)} windows, {len(labels)} labels, {sum(p.numel() for p in model.parameters())} parameters")

# %% [markdown]
# ## Step 2: AdamW with two groups
#
# Weight decay pulls weights towards zero. It makes sense for matrices, but not for biases or
# LayerNorm gains (a gain decayed towards 0 would switch the layer off). The rule "decay only
# tensors with 2 or more dimensions" sorts them. Frozen tensors (chapter 7) stay out entirely.

# %%
cfg = TrainConfig(lr=1e-3, warmup=0.1, weight_decay=0.01, clip=1.0)  # 1e-3: a random model needs more than 5e-5
optimizer = make_optimizer(model, cfg)
decay, no_decay = optimizer.param_groups
names = {id(p): n for n, p in model.named_parameters()}
print("no decay:", [names[id(p)] for p in no_decay["params"]][:4], "...")

# %%
assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
assert not any("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in decay["params"])
assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

# %% [markdown]
# ## Step 3: the learning-rate schedule
#
# `get_lr` rises linearly over the first 10% of steps (warmup: early gradients of a fresh head
# are large and noisy, and Adam's statistics are not yet estimated), then falls linearly to 0.

# %%
STEPS = 30 if TINY else 120
schedule = [get_lr(step, STEPS, cfg) for step in range(STEPS)]
peak = schedule.index(max(schedule))
print(" ".join(f"{lr:.1e}" for lr in schedule[:5]), "...", f"peak at step {peak}", "...", f"{schedule[-1]:.1e}")

# %%
assert max(schedule) == cfg.lr and peak == int(cfg.warmup * STEPS) - 1  # the last warmup step
assert all(a < b for a, b in zip(schedule[:peak], schedule[1:peak + 1]))  # rises during warmup
assert all(a >= b for a, b in zip(schedule[peak:], schedule[peak + 1:]))  # then only falls
assert 0 < schedule[-1] < cfg.lr / 10  # almost nothing left at the end

# %% [markdown]
# ## Step 4: one step, in the canonical order
#
# set lr → forward under `autocast` → loss → `scaler.scale(loss).backward()` → `unscale_` →
# clip → `scaler.step` → `scaler.update` → `zero_grad`. On a CPU we train in float32, so
# autocast is disabled and the scaler is a no-op; the *same lines* serve bf16 and fp16 on a GPU.
# Clipping rescales the whole gradient so its norm is at most `clip`: one bad batch cannot
# throw the weights far away. It must come after `unscale_`, or it would clip scaled gradients.

# %%
device, dtype = torch.device("cpu"), torch.float32
scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # only fp16 needs it


def train_step(batch, step):
    for group in optimizer.param_groups:
        group["lr"] = get_lr(step, STEPS, cfg)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = ner_loss(model(batch.input_ids, batch.attention_mask), batch.labels)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # gradients back to their true size before we measure them
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)  # returns the norm BEFORE clipping
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


# %% [markdown]
# ## Step 5: the loop
#
# Each epoch visits every window once in a random order (`batch_indices`; languages are mixed
# in every batch). We record the loss of every step.

# %%
model.train()
losses, norms, step = [], [], 0
generator = torch.Generator().manual_seed(0)
while step < STEPS:
    for index in batch_indices([len(w.input_ids) for w in windows], 16, generator=generator):
        if step == STEPS:
            break
        loss, norm = train_step(collate([windows[i] for i in index], tok.pad_token_id), step)
        losses.append(loss)
        norms.append(norm)
        step += 1
print(" ".join(f"{loss:.2f}" for loss in losses[::max(1, STEPS // 10)]))

# %%
first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
print(f"loss: first 5 steps {first:.3f}, last 5 steps {last:.3f}")
assert last < 0.7 * first  # it learns
assert losses[0] > 1.0  # and started near log(9) = 2.2, i.e. guessing among 9 labels

# %% [markdown]
# ## Step 6: bf16 or fp16?
#
# Both halve memory and speed up matrix products on a GPU. fp16 has 10 mantissa bits but a tiny
# range: gradients below ~6e-8 become 0. The `GradScaler` multiplies the loss by a large factor
# before `backward` so they survive, and divides it out in `unscale_`. bf16 keeps float32's
# 8-bit exponent (same range) with only 7 mantissa bits: no underflow, so no scaler, at the cost
# of precision, which is why the weights themselves stay float32 under autocast.

# %%
tiny_grad = torch.tensor(1e-8)
print("fp16 max", torch.finfo(torch.float16).max, " bf16 max", torch.finfo(torch.bfloat16).max)
print("1e-8 in fp16:", tiny_grad.half().item(), " scaled by 2**16:", (tiny_grad * 2**16).half().item())
batch = collate(windows[:8], tok.pad_token_id)
model.eval()  # no dropout, so the two forward passes differ only by precision
with torch.no_grad():
    logits_fp32 = model(batch.input_ids, batch.attention_mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 autocast runs on CPUs too
        logits_bf16 = model(batch.input_ids, batch.attention_mask)

# %%
assert tiny_grad.half().item() == 0.0 and (tiny_grad * 2**16).half().item() > 0  # underflow, rescued
assert tiny_grad.bfloat16().item() > 0  # bf16 has the range
assert torch.tensor(1 + 1 / 512).bfloat16().item() == 1.0  # but not the precision
assert logits_bf16.dtype == torch.bfloat16 and model.classifier.weight.dtype == torch.float32
torch.testing.assert_close(logits_bf16.float(), logits_fp32, rtol=0.05, atol=0.1)  # close, not equal
assert not torch.amp.GradScaler("cpu", enabled=False).is_enabled()  # fp32/bf16: the scaler does nothing

# %% [markdown]
# ## Exercises
#
# 1. Set `cfg.warmup = 0` and `cfg.lr = 1e-2`. Does the loss still go down? Plot `norms`.
# 2. Move `clip_grad_norm_` before `scaler.unscale_`. With fp16 on a GPU, what would it clip?
# 3. Gradient accumulation: split each batch of 16 into two of 8 and step every second call.
#    What must the loss be divided by so the update equals one batch of 16? (Compare with the
#    loop in `minibert_ner/train.py`, which divides by labelled pieces, not by batches.)
# 4. Train Step 5 under bf16 autocast. How close do the losses stay to float32's?
