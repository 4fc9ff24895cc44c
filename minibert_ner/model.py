"""The BERT encoder (Devlin et al. 2018), written out in one file to be read.

What is here: `BertConfig` (Hugging Face's field names, so a `config.json` or Google's
`bert_config.json` loads as is) and `BertModel` — embeddings, a stack of post-LayerNorm transformer
layers with exact-erf GELU, an optional pooler. The module tree mirrors Hugging Face's
`modeling_bert.py` name for name (`encoder.layer.3.attention.self.query`, ...) so loading a
checkpoint is a rename, not a translation (see weights.py), and a student can diff the two.

What is deliberately left out: cross-attention, key/value caches, head pruning, relative
position embeddings, gradient checkpointing. mBERT needs none of them.

Paper: Moon et al. fine-tune bert-base-multilingual-cased (12 layers, hidden 768, 12 heads,
vocab 119,547). Freezing the "lowest k layers" (their #frz) needs the encoder to be runnable in
two parts — `embed` + `run_layers(h, mask, 0, k)` below the boundary, `run_layers(h, mask, k, L)`
above it — so those pieces are public methods here.
"""
import json
import math
from dataclasses import asdict, dataclass, fields
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .speed import Dropout, Unpadded  # nn.Dropout with a faster CPU mask; padding skipped (speed.py)


class BertConfigError(ValueError):
    """A config.json that describes no BERT (not JSON, a size that is no positive integer, heads that do
    not divide the hidden size, an unknown activation); the message names the file and the field."""


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder. Defaults are bert-base-multilingual-cased's."""

    vocab_size: int = 119547
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # Not a checkpoint property but a choice of kernel: "sdpa" (fused, fast) or "eager"
    # (softmax(QK^T/sqrt(d))V written out, for reading). Both compute the same function.
    attn_implementation: str = "sdpa"

    def __post_init__(self):
        sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size")
        for name in sizes:  # bool is an int in Python; a size of True is no size
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "num_hidden_layers" else 1):
                raise BertConfigError(f"{name} {value!r} is not a positive integer")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise BertConfigError(f"pad_token_id {self.pad_token_id!r} is not an id below vocab_size {self.vocab_size}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps", "initializer_range"):
            if not isinstance(getattr(self, name), (int, float)) or not 0 <= getattr(self, name) < 1:
                raise BertConfigError(f"{name} {getattr(self, name)!r} is not a number from 0 to below 1")
        if self.hidden_size % self.num_attention_heads != 0:
            raise BertConfigError(f"hidden_size {self.hidden_size} is not a multiple of "
                                  f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise BertConfigError(f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise BertConfigError(f"attn_implementation must be 'sdpa' or 'eager', "
                                  f"not {self.attn_implementation!r}")

    @classmethod
    def from_dict(cls, d):
        """Keep the keys we know, ignore the rest (HF configs carry dozens we do not use)."""
        if not isinstance(d, dict):
            raise BertConfigError(f"expected a JSON object of settings, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, path):
        """Read a Hugging Face `config.json` or Google's `bert_config.json`."""
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: config file not found") from None
        except json.JSONDecodeError as e:
            raise BertConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise BertConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
        try:
            return cls.from_dict(d)
        except BertConfigError as e:
            raise BertConfigError(f"{path}: {e}") from None

    def to_dict(self):
        return asdict(self)


# Exact GELU (erf form) is what BERT was trained with; the tanh form differs by ~1e-3 and
# would break parity with the checkpoint, so it is only used when a config asks for it.
ACTIVATIONS = {
    "gelu": partial(F.gelu, approximate="none"),
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
}


class BertEmbeddings(nn.Module):
    """word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        B, T = input_ids.shape
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence of {T} pieces is longer than max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}; cut it into windows")
        pos = torch.arange(T, device=input_ids.device)  # (T,) positions count from 0 per row
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)  # (B, T, C)
        if token_type_ids is None:
            # single-segment input: every piece is segment 0, so add row 0 of the table
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the whole sequence (no causal mask)."""

    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.n_head = config.num_attention_heads
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.dropout = Dropout(config.attention_probs_dropout_prob)
        self.implementation = config.attn_implementation

    def forward(self, x, keep, packed=None):
        """x: (B, T, C), or (N, C) real pieces only when `packed` (an Unpadded) says where they sit;
        keep: (B, 1, 1, T) bool, True for real pieces, or None (no padding). Returns x's shape."""
        q, k, v = self.query(x), self.key(x), self.value(x)  # projections: piece by piece
        if packed is None:
            return self.attend(q, k, v, keep)
        return packed.by_groups(self.attend, q, k, v)  # attention mixes the pieces of a row: rows back

    def attend(self, q, k, v, keep):
        """q, k, v: (B, T, C); keep: (B, 1, 1, T) or None. -> (B, T, C)."""
        B, T, C = q.shape
        nh, hs = self.n_head, C // self.n_head
        # split the channels into heads: (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, nh, hs).transpose(1, 2)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        p = self.dropout.p if self.dropout.training else 0.0
        if self.implementation == "sdpa" and (p == 0 or q.device.type != "cpu"):
            # the same computation as below, in one fused kernel (no (T, T) matrix kept for backward
            # where the backend supports it). On CPU no fused kernel takes dropout: SDPA would run
            # the lines below with torch's slower dropout, so CPU training runs them itself.
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T) similarity of every pair
            if keep is not None:
                # padded keys get -inf-like scores so softmax gives them exactly zero weight
                att = att.masked_fill(~keep, torch.finfo(att.dtype).min)
            att = self.dropout(F.softmax(att, dim=-1))
            y = att @ v  # (B, nh, T, hs) weighted sum of values
        return y.transpose(1, 2).reshape(B, T, C)  # re-assemble the heads side by side


class BertLayer(nn.Module):
    """One transformer block, post-LN: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config):
        super().__init__()
        C, eps = config.hidden_size, config.layer_norm_eps
        # ModuleDicts reproduce the checkpoint's key names (attention.self.query, attention.output.dense)
        self.attention = nn.ModuleDict(dict(
            self=BertSelfAttention(config),
            output=nn.ModuleDict(dict(dense=nn.Linear(C, C), LayerNorm=nn.LayerNorm(C, eps=eps))),
        ))
        self.intermediate = nn.ModuleDict(dict(dense=nn.Linear(C, config.intermediate_size)))
        self.output = nn.ModuleDict(dict(dense=nn.Linear(config.intermediate_size, C),
                                         LayerNorm=nn.LayerNorm(C, eps=eps)))
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x, keep, packed=None):
        """x: (B, T, C), or (N, C) with `packed` (see Unpadded); the result has x's shape."""
        att = self.attention
        a = att.output.dense(att.self(x, keep, packed))
        x = att.output.LayerNorm(x + self.dropout(a))  # residual, then normalise (post-LN)
        h = self.act(self.intermediate.dense(x))  # (B, T, 4C) for BERT-base
        x = self.output.LayerNorm(x + self.dropout(self.output.dense(h)))
        return x


class BertModel(nn.Module):
    """The encoder: input ids (B, T) -> last hidden states (B, T, C)."""

    def __init__(self, config, add_pooler=False):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        # The pooler (dense + tanh on [CLS]) served next-sentence prediction in pre-training; NER
        # never uses it, so by default it is not built and costs nothing.
        self.pooler = None
        if add_pooler:
            self.pooler = nn.ModuleDict(dict(dense=nn.Linear(config.hidden_size, config.hidden_size)))
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # BERT's initialisation: N(0, 0.02) for every matrix, zero biases, identity LayerNorms.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def num_layers(self):
        return len(self.encoder.layer)

    def embed(self, input_ids, token_type_ids=None):
        """The embedding layer alone: (B, T) ids -> (B, T, C)."""
        return self.embeddings(input_ids, token_type_ids)

    @staticmethod
    def attention_keep_mask(attention_mask):
        """(B, T) 1/0 padding mask -> (B, 1, 1, T) bool that broadcasts over heads and queries."""
        if attention_mask is None or bool(attention_mask.all()):
            return None  # no padding: no mask, which lets SDPA take its fastest kernel
        return attention_mask.bool()[:, None, None, :]

    def run_layers(self, x, attention_mask=None, start=0, end=None):
        """Run layers start..end-1 on hidden states x (B, T, C); the freezing code splits here.
        Padded batches run packed (see Unpadded): the same result at every real piece, zeros at
        the padding, and no work spent on it."""
        keep = self.attention_keep_mask(attention_mask)
        layers = self.encoder.layer[start:end]
        if keep is None or len(layers) == 0:
            for layer in layers:
                x = layer(x, keep)
            return x
        packed = Unpadded(attention_mask)
        h = packed.pack(x)  # (N, C)
        for layer in layers:
            h = layer(h, keep, packed)
        return packed.unpack(h)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """
        input_ids:      (B, T) piece ids, [CLS] first.
        attention_mask: (B, T) 1 for real pieces, 0 for padding; None means no padding.
        Returns the last layer's hidden states, (B, T, C); padded positions hold zeros, which
        whatever reads them must ignore.
        """
        return self.run_layers(self.embed(input_ids, token_type_ids), attention_mask)

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None):
        """Every layer's output: a list of num_layers + 1 tensors (B, T, C), embeddings first.
        Runs the plain padded path (no packing), so tests can compare the two."""
        keep = self.attention_keep_mask(attention_mask)
        states = [self.embed(input_ids, token_type_ids)]
        for layer in self.encoder.layer:
            states.append(layer(states[-1], keep))
        return states

    def pool(self, hidden):
        """The pre-training pooler: tanh(dense(h[CLS])), (B, C). Only when built with add_pooler."""
        if self.pooler is None:
            raise RuntimeError("this BertModel was built without a pooler (add_pooler=False)")
        return torch.tanh(self.pooler.dense(hidden[:, 0]))
