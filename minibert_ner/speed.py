"""What makes the reference model fast, kept apart so that model.py, heads.py and train.py read like the paper.

Nothing here changes what is computed (tests/test_speed.py holds each against the plain path):
  Dropout            nn.Dropout's exact computation, its CPU mask drawn in a third of the time
  Unpadded           run a padded batch's layers on its real pieces only (packing), attention in row groups
  PrefixCache        with #frz = k, the frozen embeddings + k layers run once per window, not once per epoch
  keep_freed_memory  let glibc keep the memory a training step frees, so the next step takes no page faults
Each is measured in README's Performance section (`python -m minibert_ner.tools.bench --help`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Dropout(nn.Dropout):
    """BERT's dropout, with its mask drawn faster on CPU. In training every element is kept
    independently with probability 1 - p and scaled by 1 / (1 - p); in eval mode it is the identity.

    nn.Dropout computes exactly this, but on CPU it draws its mask with `bernoulli_`, one
    double-precision uniform per element (~8 ns each, a sixth of a MiniLM training step). Here one
    float32 uniform per element (torch.rand) is compared with p instead (~3-4 ns). The keep
    probability is then 1 - p to within 2⁻²⁴ ≈ 6e-8 (u lies on the grid k·2⁻²⁴): as fine as CUDA's
    dropout kernel, finer than Google's BERT (TensorFlow floors keep_prob + a 23-bit uniform).
    The mask comes from torch's global generator: a seed fixes it and --resume restores it.
    On GPUs F.dropout is one fused kernel, so it is used as it is."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return (x * self.mask(x.shape, x.device)).to(x.dtype)  # bf16 x: scaled in fp32, rounded once

    def mask(self, shape, device):
        """(shape) float32: 1 / (1 - p) where an element is kept, 0 where it is dropped."""
        u = torch.rand(shape, device=device)  # uniform on [0, 1)
        return u.ge_(self.p).mul_(1 / (1 - self.p))  # in place: u >= p -> 1.0 or 0.0 -> scaled


class Unpadded:
    """Where the real pieces of a padded batch sit, so that work can skip the padding.

    Everything in a BERT layer except attention treats each piece on its own (projections,
    feed-forward, LayerNorm, dropout), so those run on the N real pieces packed into (N, C)
    instead of (B, T, C). With random batches of CoNLL sentences ~60% of a padded batch is padding:
    packing skips it. Attention mixes the pieces of a row, so it needs rows back; it gets them in
    `groups` of rows of similar length, each padded only to its own longest row. Padding costs
    attention T² per row, and one long sentence made every row of the batch pay for 64²: in
    groups, ~35% of the padded batch's attention work is left at 4 groups of 8 rows (measured on
    CoNLL random batches).
    """

    def __init__(self, attention_mask, rows_per_group=8):
        device = attention_mask.device
        real = attention_mask.bool().cpu()  # small bookkeeping: on the CPU (one copy from a GPU)
        self.B, self.T = B, T = real.shape
        index = real.flatten().nonzero().squeeze(1)  # (N,) flat positions of real pieces
        # slot[b * T + t]: where piece (b, t) sits in the packed (N, ...) tensor; padding points
        # at piece 0, a stand-in that attention masks out (its value never reaches a real piece)
        slot = torch.zeros(B * T, dtype=torch.long)
        slot[index] = torch.arange(len(index))
        ends = (real * torch.arange(1, T + 1)).amax(1)  # (B,) 1 + each row's last real piece
        self.groups, offset = [], 0
        spot = torch.zeros(B * T, dtype=torch.long)  # (b, t) -> its row in the groups, concatenated
        for rows in ends.argsort(descending=True).split(rows_per_group):  # longest rows first
            Tg = int(ends[rows[0]])
            if Tg == 0:  # rows without a real piece (never from collate): nothing to attend
                break
            flat = (rows[:, None] * T + torch.arange(Tg)).flatten()  # (Bg * Tg,) positions in (B, T)
            keep = real[rows, :Tg]
            self.groups.append((slot[flat].to(device), len(rows), Tg,
                                None if keep.all() else keep[:, None, None, :].to(device)))
            spot[flat] = torch.arange(offset, offset + len(flat))
            offset += len(flat)
        self.index = index.to(device)
        self.ungroup = spot[index].to(device)  # (N,) where each real piece sits in the groups

    def pack(self, x):
        """(B, T, ...) -> (N, ...): the real pieces only."""
        return x.flatten(0, 1).index_select(0, self.index)

    def unpack(self, x):
        """(N, ...) -> (B, T, ...), zeros at the padded positions."""
        out = x.new_zeros(self.B * self.T, *x.shape[1:])
        return out.index_copy(0, self.index, x).view(self.B, self.T, *x.shape[1:])

    def by_groups(self, fn, *xs):
        """fn(*rows, keep) for each group of rows: xs are (N, C) packed, fn gets (Bg, Tg, C) and the
        group's (Bg, 1, 1, Tg) keep mask (or None) and returns (Bg, Tg, C'). Returns (N, C')."""
        ys = [fn(*(x.index_select(0, gather).view(Bg, Tg, -1) for x in xs), keep)
              for gather, Bg, Tg, keep in self.groups]
        return torch.cat([y.flatten(0, 1) for y in ys]).index_select(0, self.ungroup)


class PrefixCache:
    """Frozen-prefix caching. With #frz = k the embeddings and the lowest k layers never change and
    their dropout is off, so their output for a window is the same every epoch: compute it once,
    keep it (up to a memory budget), and later epochs run only the layers above the boundary.
    The training windows and each dev set are cached alike, told apart by a name ("train",
    "dev-en", ...) and the window's index (`batch.index`).
    Cached rows are stored without padding and zero-padded when a batch is assembled, as the
    encoder itself returns them (padded positions are never computed: see Unpadded)."""

    def __init__(self, budget_gb):
        self.rows, self.budget, self.used = {}, budget_gb * 2**30, 0

    def prefix(self, model, batch, name="train"):
        """`model.frozen_prefix` of the batch, (B, T, C), from the cache where every row is in it."""
        keys = [(name, i) for i in batch.index]
        lengths = batch.attention_mask.sum(1).tolist()
        if all(k in self.rows for k in keys):  # every window seen before: no frozen compute
            B, T = batch.input_ids.shape
            first = self.rows[keys[0]]
            out = first.new_zeros(B, T, first.shape[-1])  # (B, T, C)
            for b, k in enumerate(keys):
                out[b, : lengths[b]] = self.rows[k]
            return out
        h = model.frozen_prefix(batch.input_ids, batch.attention_mask)  # (B, T, C), no autograd
        for b, k in enumerate(keys):
            row = h[b, : lengths[b]]
            if k not in self.rows and self.used + row.nbytes <= self.budget:
                self.rows[k] = row.clone()
                self.used += row.nbytes
        return h


def keep_freed_memory():
    """Let the C allocator keep the memory a training step frees, for the next step to reuse.

    A CPU step allocates and frees the same large tensors every time (activations, the gradients,
    the 47 MB word-embedding gradient of a 30k x 384 vocabulary). glibc's malloc hands blocks over
    32 MB (and any free top of its heap) back to the kernel, so every step touches them afresh and
    takes a page fault per 4 KB page: 35,000-50,000 a MiniLM step on this project's VM, where a
    bf16 step took ~1,060 ms of wall time with them and ~600 ms without (README Performance). Why
    not leave it to glibc: its own threshold rises only to 32 MB. With both raised, freed
    memory stays in the process and is reused without faults; what is computed is unchanged, and
    the process keeps its peak memory until it exits. glibc only (Linux); elsewhere a no-op.
    Returns whether it took effect."""
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt  # None: the C library this process already runs on
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
