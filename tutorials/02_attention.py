# %% [markdown]
# # 2. Embeddings and one attention layer, by hand
#
# **What you will build:** BERT's input embeddings and one transformer layer (multi-head
# self-attention, the feed-forward block, residuals and LayerNorm) written out in a few lines of
# PyTorch, then checked number for number against the library's `BertEmbeddings` and `BertLayer`.
#
# **You need:** PyTorch tensors, `nn.Linear`, `F.softmax`. Chapter 1 (what a piece id is).
#
# **Time:** 20 minutes to read; runs in a second or two.

# %%
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
from minibert_ner.model import BertConfig, BertEmbeddings, BertLayer  # noqa: E402

torch.manual_seed(0)

# %% [markdown]
# ## Step 1: a tiny configuration and a padded batch
#
# Shapes are named as in the library: `B` sentences, `T` pieces, `C` channels, `nh` heads of
# `hs = C / nh` channels each. Two sentences of different length share one tensor, so the
# shorter one is padded with `[PAD]` (id 0), and `attention_mask` says which pieces are real.

# %%
config = BertConfig(vocab_size=50, hidden_size=16, num_attention_heads=4, intermediate_size=64,
                    num_hidden_layers=1, max_position_embeddings=32, attn_implementation="eager")
B, T, C, nh = 2, 6, config.hidden_size, config.num_attention_heads
hs = C // nh
input_ids = torch.tensor([[2, 11, 12, 13, 14, 3],   # [CLS] w w w w [SEP]
                          [2, 21, 22, 3, 0, 0]])    # [CLS] w w [SEP] [PAD] [PAD]
attention_mask = (input_ids != config.pad_token_id).long()  # (B, T): 1 real, 0 padding
print(attention_mask)

# %% [markdown]
# ## Step 2: embeddings
#
# Each piece's vector is the sum of three looked-up rows: its word piece, its position (0, 1,
# 2, ...) and its segment (always 0 for NER). LayerNorm then rescales each vector to mean 0 and
# variance 1, times a learned gain plus a learned bias. Dropout is off in `eval()` mode.

# %%
emb = BertEmbeddings(config).eval()
positions = torch.arange(T)  # (T,)
x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions) + emb.token_type_embeddings.weight[0]
x = F.layer_norm(x, (C,), emb.LayerNorm.weight, emb.LayerNorm.bias, eps=config.layer_norm_eps)  # (B, T, C)

# %%
torch.testing.assert_close(x, emb(input_ids), rtol=1e-6, atol=1e-6)
assert x.shape == (B, T, C)

# %% [markdown]
# ## Step 3: one attention head's worth of arithmetic, for all heads at once
#
# Three linear maps turn each vector into a query, a key and a value. The channels are split into
# `nh` heads, each attending on its own. Head by head, `softmax(Q K^T / sqrt(hs)) V`: every
# piece's output is a weighted average of all values, weighted by how well its query matches
# each key. Dividing by `sqrt(hs)` keeps the scores' spread independent of the head size, so the
# softmax does not saturate.

# %%
layer = BertLayer(config).eval()
self_att = layer.attention.self


def split_heads(t):
    return t.view(B, T, nh, hs).transpose(1, 2)  # (B, T, C) -> (B, nh, T, hs)


q, k, v = split_heads(self_att.query(x)), split_heads(self_att.key(x)), split_heads(self_att.value(x))
scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T): row i = how much piece i looks at each j

# %% [markdown]
# ## Step 4: the padding mask
#
# Padding must not influence real pieces. Before the softmax, the score of every *key* that is
# padding is set to the most negative number there is, so its weight comes out exactly 0.
# The mask has shape `(B, 1, 1, T)`: it broadcasts over heads and over query rows.

# %%
keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
weights = F.softmax(scores, dim=-1)  # (B, nh, T, T), each row sums to 1
y = (weights @ v).transpose(1, 2).reshape(B, T, C)  # heads side by side again: (B, T, C)

# %%
assert torch.all(weights[1, :, :, 4:] == 0)  # nobody attends to sentence 2's two [PAD]s
torch.testing.assert_close(weights.sum(-1), torch.ones(B, nh, T))
torch.testing.assert_close(y, self_att(x, keep), rtol=1e-6, atol=1e-6)  # = library's BertSelfAttention

# %% [markdown]
# ## Step 5: the rest of the layer
#
# An output projection, a residual connection, LayerNorm; then a two-layer feed-forward network
# with the exact (erf) GELU, another residual, another LayerNorm. BERT normalises *after* adding
# the residual ("post-LN"), unlike GPT-2 which normalises before.

# %%
ln = lambda t, m: F.layer_norm(t, (C,), m.weight, m.bias, eps=config.layer_norm_eps)  # noqa: E731
a = ln(x + layer.attention.output.dense(y), layer.attention.output.LayerNorm)
h = F.gelu(layer.intermediate.dense(a))  # (B, T, 4C), approximate="none" by default
out = ln(a + layer.output.dense(h), layer.output.LayerNorm)  # (B, T, C)

# %%
torch.testing.assert_close(out, layer(x, keep), rtol=1e-6, atol=1e-6)  # = library's BertLayer

# %% [markdown]
# ## Step 6: padding really is invisible
#
# Run sentence 2 alone, without its padding: its real pieces must come out the same.
# (The values *at* padded positions are meaningless and are never read.)

# %%
alone = layer(emb(input_ids[1:, :4]), None)  # (1, 4, C), no padding, no mask
torch.testing.assert_close(alone[0], out[1, :4], rtol=1e-5, atol=1e-5)
print("max difference, padded vs alone:", (alone[0] - out[1, :4]).abs().max().item())

# %% [markdown]
# ## Exercises
#
# 1. Drop the `/ math.sqrt(hs)`. Which assert fires? Now make `hs` 64 and look at
#    `weights.max(-1)`: what happens to the softmax without the scaling?
# 2. Replace `masked_fill(..., finfo.min)` by adding `-1e4` to padded scores, as old BERT code
#    did. Does Step 6 still pass in float32? In bfloat16 (`x.bfloat16()`)?
# 3. Build the mask as `(B, 1, T, 1)` by mistake. What does it hide instead, and which check
#    notices?
# 4. Switch `config.attn_implementation` to `"sdpa"` and confirm `F.scaled_dot_product_attention`
#    computes the same thing in one fused call.
