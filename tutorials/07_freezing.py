# %% [markdown]
# # 7. Freezing the lowest layers (#frz)
#
# **What you will build:** partial fine-tuning as the paper does it ("Experiments: partial
# updates"): the embeddings and the lowest k layers get no updates *and* no dropout. You will
# see why dropout must be off below the boundary, prove frozen weights do not move, and run the
# paper's Tables 4-5 in miniature: a sweep over k on the sample.
#
# **You need:** chapter 5 (a training step) and chapter 6 (`train()`).
#
# **Time:** 15 minutes to read; the sweep takes two or three minutes on a laptop CPU.

# %%
import os
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
TINY = os.environ.get("MINIBERT_TUTORIAL_TINY") == "1"  # the test sets this: a smaller sweep
WORK = tempfile.TemporaryDirectory()  # run folders go here; deleted when Python exits
from minibert_ner.heads import NERModel, ner_loss  # noqa: E402
from minibert_ner.model import BertConfig, BertModel  # noqa: E402
from minibert_ner.runs import read_log  # noqa: E402
from minibert_ner.train import TrainConfig, make_optimizer, train  # noqa: E402

torch.manual_seed(0)

# %% [markdown]
# ## Step 1: what "#frz = k" freezes
#
# `-1` trains everything (the usual fine-tuning). `0` freezes the embeddings. `k` freezes the
# embeddings and layers `0 .. k-1`. Frozen tensors get `requires_grad=False`, so autograd
# computes nothing for them and the optimizer never holds them.

# %%
config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32)
model = NERModel(BertModel(config), labels=["O", "I-PER", "I-LOC"], frz=2).train()
for name, module in [("embeddings", model.bert.embeddings), *[(f"layer {i}", l) for i, l in enumerate(model.bert.encoder.layer)]]:
    trainable = all(p.requires_grad for p in module.parameters())
    print(f"{name:>10}: {'trained' if trainable else 'FROZEN'}, dropout {'on' if module.training else 'off'}")

# %%
assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
assert [all(p.requires_grad for p in layer.parameters()) for layer in model.bert.encoder.layer] == [False, False, True, True]
assert model.classifier.weight.requires_grad

# %% [markdown]
# ## Step 2: why dropout must be off below the boundary
#
# In training mode dropout zeroes random activations. A frozen layer is meant to compute
# exactly what the pretrained model computes; with dropout on, it would hand the trained layers
# a noisy version of it that they never see at test time (footnote 6 of the paper: "Dropout is
# also switched to evaluation mode in the corresponding layers"). Run the same batch twice in
# training mode and compare every layer's output:

# %%
ids = torch.randint(5, 100, (3, 12))
with torch.no_grad():
    first, second = model.bert.hidden_states(ids), model.bert.hidden_states(ids)  # embeddings + 4 layers
same = [torch.equal(a, b) for a, b in zip(first, second)]
print("identical in both passes (embeddings, layer 0..3):", same)

# %%
assert same == [True, True, True, False, False]  # below the boundary: deterministic; above: dropout

# %% [markdown]
# `NERModel.train()` re-freezes after `nn.Module.train()`. Call the plain PyTorch method and
# the frozen part becomes noisy too: this is the bug the override prevents.

# %%
torch.nn.Module.train(model)  # what a naive loop's model.train() would do
with torch.no_grad():
    noisy = torch.equal(model.bert.hidden_states(ids)[1], model.bert.hidden_states(ids)[1])
model.train()  # the library's train(): frozen layers back in eval mode
assert not noisy

# %% [markdown]
# ## Step 3: frozen weights do not move
#
# One optimizer step: weights above the boundary change, weights below are bit-identical.

# %%
before = {n: p.detach().clone() for n, p in model.named_parameters()}
optimizer = make_optimizer(model, TrainConfig(lr=1e-2))
labels = torch.randint(0, 3, (3, 12))
ner_loss(model(ids), labels).backward()
optimizer.step()
moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}

# %%
assert not any(n.startswith(("bert.embeddings", "bert.encoder.layer.0.", "bert.encoder.layer.1.")) for n in moved)
assert any(n.startswith("bert.encoder.layer.2.") for n in moved) and "classifier.weight" in moved
assert all(p.grad is None for p in model.bert.embeddings.parameters())  # not even a gradient

# %% [markdown]
# ## Step 4: Tables 4 and 5 in miniature
#
# The paper trains mBERT on three CoNLL languages and tests zero-shot on the fourth, for #frz in
# -1, 0, 3, 5, 7, 11, 12: freezing a few layers *helps* zero-shot (Dutch test: 79.8 → 83.4 at
# #frz 3), freezing all 12 hurts badly (64.2). We sweep #frz on the sample with a 2-layer
# random BERT, zero-shot to Dutch. Expect the mechanics, not the paper's gain: freezing
# preserves what *pre-training* put in the low layers, and a random model has nothing to
# preserve. What does show: the fewer layers train, the less the model can learn at all.

# %%
SAMPLE = REPO / "data" / "sample"
files = lambda split, langs: [(lang, str(SAMPLE / lang / f"{split}.txt")) for lang in langs]  # noqa: E731
sweep = [-1, 0, 2] if TINY else [-1, 0, 1, 2]
table = {}
for frz in sweep:
    cfg = TrainConfig(train=files("train", ["en", "de", "es"]), dev=files("dev", ["en", "nl"]), target=["nl"],
                      frz=frz, epochs=3 if TINY else 5, max_sentences=80 if TINY else 200, batch_size=16, lr=2e-3,
                      tiny=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
                      out=str(Path(WORK.name) / f"frz{frz}"), device="cpu", quiet=True, seed=1)
    train(cfg)
    last = read_log(cfg.out)[-1]
    table[frz] = {lang: last["dev"][lang]["f1"] for lang in ("en", "nl")}
print("#frz   en (seen)   nl (zero-shot)   dev F1 after the last epoch")
for frz, f1 in table.items():
    print(f"{frz:>4}   {f1['en'] * 100:9.1f}   {f1['nl'] * 100:14.1f}")

# %%
assert set(table) == set(sweep)
assert table[-1]["en"] > table[2]["en"]  # training only the output layer on random features learns least

# %% [markdown]
# ## Step 5: is a difference real? Seeds and Student's t
#
# One seed per level says little: the same run with another seed moves F1 by about a point. The grid
# trains 3 seeds per cell, and the report reads each of the paper's comparisons with Student's
# two-sample t-test: the difference of the means, its standard error, and "detectable" only when
# |t| passes the 5 % point (2.78 for 3 + 3 seeds). Here: the real German test F1 (%) of
# multilingual-e5-small at #frz 3 and -1 (RESULTS.md, section 4), then the same with one #frz 3 seed
# made 2 points lower.

# %%
from minibert_ner.tools.report import compare  # noqa: E402

frz3, nothing = [0.6324, 0.6219, 0.6200], [0.6125, 0.5992, 0.5941]
d, se, verdict = compare(frz3, nothing, paper=72.44 - 70.34)  # the paper's Table 5: +2.10
print(f"#frz 3 - #frz -1: {d:+.2f} points, standard error {se:.2f}, t {d / se:.1f}: {verdict}")
close = compare([0.6324, 0.6019, 0.6200], nothing, paper=2.10)
print(f"one seed 2 points lower: {close[0]:+.2f}, se {close[1]:.2f}: {close[2]}")

# %%
assert verdict == "reproduced" and abs(d - 2.28) < 0.01
assert close[2].startswith("not detectable")  # one seed's wobble: a smaller gap, a wider spread

# %% [markdown]
# ## Exercises
#
# 1. In Step 2, freeze with `frz=0`. Which entries of `same` change? And with `frz=4`?
# 2. `NERModel.frozen_prefix` runs the frozen part under `torch.no_grad()` and is deterministic.
#    How could a training loop exploit that across epochs? What does it save, and what must
#    not change for the cache to stay valid?
# 3. Remove the `train()` override in your head: which test in `tests/` would catch it?
# 4. With `all-MiniLM-L6-v2` installed, repeat the sweep with `model=` its folder and
#    `lowercase=True` for #frz in -1, 0, 3, 6. Does freezing now help the zero-shot column?
# 5. In Step 5, how many seeds a side would `close` need to be detectable if every new seed kept the
#    same mean and spread? (t grows with the square root of the seeds; its 5 % point falls.)
