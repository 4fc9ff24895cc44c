"""Tests for minibert_ner.speed: each piece of speed machinery computes what the plain path computes.

Packing (Unpadded) against the padded layers, values and gradients; the CPU dropout mask against
nn.Dropout's definition (keep probability, independence, seed, gradient); the frozen-prefix cache
against running the frozen layers; the malloc setting against the page faults it removes.
"""
import math
import platform
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from minibert_ner.heads import NERModel
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.speed import Dropout, PrefixCache, Unpadded

from conftest import DEVICES

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=40)


def padded_batch(vocab_size, lengths, seed=0):
    """Random ids, padded to the longest row (pad id 0); mask 1 = real piece."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (len(lengths), max(lengths)), generator=g)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def max_diff_on_real(a, b, mask):
    return (a - b).abs()[mask.bool()].max().item()


def test_unpadded_pack_and_unpack_are_inverse_on_real_pieces():
    ids, mask = padded_batch(99, [4, 1, 3])
    x = torch.randn(3, 4, 5)
    packed = Unpadded(mask)
    assert packed.pack(x).shape == (8, 5)  # 4 + 1 + 3 real pieces
    back = packed.unpack(packed.pack(x))
    torch.testing.assert_close(back[mask.bool()], x[mask.bool()], rtol=0, atol=0)
    assert (back[~mask.bool()] == 0).all()


def test_unpadded_groups_rows_by_length_and_puts_every_piece_back():
    """Attention sees rows in groups of similar length, each padded only to its own longest row."""
    lengths = [3, 12, 1, 7, 12, 5, 2, 9, 4, 6]
    _, mask = padded_batch(99, lengths)
    packed = Unpadded(mask, rows_per_group=4)
    shapes = [(Bg, Tg) for _, Bg, Tg, _ in packed.groups]
    assert shapes == [(4, 12), (4, 6), (2, 2)]  # lengths sorted: 12 12 9 7 | 6 5 4 3 | 2 1
    x = torch.randn(int(mask.sum()), 5)  # (N, C) packed pieces
    seen = []

    def identity(rows, keep):
        seen.append(None if keep is None else keep.sum().item())
        return rows

    torch.testing.assert_close(packed.by_groups(identity, x), x, rtol=0, atol=0)
    assert seen == [40, 18, 3]  # the real pieces of each group; the rest of (Bg, Tg) is masked


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("lengths", [[12, 5, 1, 9], [12, 5, 1, 9, 3, 3, 8, 12, 2, 7, 6, 4, 1, 11, 10, 5, 9, 2]])
def test_packed_layers_equal_the_padded_path_values_and_gradients(impl, lengths, device):
    """forward() runs padded batches packed (real pieces only, attention in groups of 8 rows of
    similar length); hidden_states() runs them padded. Same values at every real piece, zeros at
    the padding, and the same gradients."""
    cfg = BertConfig(**dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                     attn_implementation=impl)
    packed_model = BertModel(cfg).train()
    padded_model = BertModel(cfg).train()
    padded_model.load_state_dict(packed_model.state_dict())
    packed_model.to(device), padded_model.to(device)
    ids, mask = (t.to(device) for t in padded_batch(99, lengths))
    a, b = packed_model(ids, mask), padded_model.hidden_states(ids, mask)[-1]
    assert max_diff_on_real(a, b, mask) < 1e-5
    assert (a[~mask.bool()] == 0).all()
    w = torch.randn(a.shape[-1]).to(device)
    (a[mask.bool()] @ w).sum().backward()
    (b[mask.bool()] @ w).sum().backward()
    for (n, p), q in zip(packed_model.named_parameters(), padded_model.parameters()):
        d, scale = (p.grad - q.grad).abs().max().item(), max(1.0, q.grad.abs().max().item())
        assert d < 1e-4 * scale, f"{n}: max abs diff {d:.2e} (gradients up to {scale:.0f})"


def test_dropout_only_in_training_mode():
    model = BertModel(BertConfig(**TINY))
    ids, mask = padded_batch(99, [8, 8])
    model.eval()
    torch.testing.assert_close(model(ids, mask), model(ids, mask), rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(ids, mask), model(ids, mask))


def test_dropout_keeps_each_element_with_probability_1_minus_p_independently():
    """BERT's dropout, checked statistically on 2^22 elements per mask (5 standard deviations)."""
    torch.manual_seed(0)
    n = 2 ** 22
    for p in (0.1, 0.5):
        drop = Dropout(p).train()
        y = drop(torch.ones(n))
        assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]  # dropped or scaled
        keep = y > 0
        q = 1 - p

        def close(rate, expected, trials):
            sigma = (expected * (1 - expected) / trials) ** 0.5
            assert abs(rate - expected) < 5 * sigma, f"p={p}: rate {rate:.6f}, expected {expected:.6f}"

        close(keep.float().mean().item(), q, n)
        # independence: neighbours in memory, elements 384 apart (next row of a (N, 384) tensor),
        # and the same element in the next mask all keep together with probability q^2
        for a, b in ((keep[:-1], keep[1:]), (keep[:-384], keep[384:]), (keep, drop(torch.ones(n)) > 0)):
            close((a & b).float().mean().item(), q * q, len(a))
        # and the keep rate does not depend on the position (columns of a (N, 384) view)
        per_column = keep[: n // 384 * 384].view(-1, 384).float().mean(0)
        close(per_column.max().item(), q, n // 384 / 10)  # loose: the max of 384 columns


def test_dropout_keep_probability_is_exact_to_float32():
    """torch.rand's floats lie on the grid k / 2^24, so u >= p keeps 2^24 - ceil(p * 2^24) of the
    2^24 values: 1 - p to within 2^-24, finer than TensorFlow's 23-bit uniforms in Google's BERT."""
    for p in (0.1, 0.3):
        p32 = torch.tensor(p, dtype=torch.float32).item()  # the comparison is in float32
        kept = 2 ** 24 - math.ceil(p32 * 2 ** 24)
        assert abs(kept / 2 ** 24 - (1 - p)) <= 2 ** -24


def test_dropout_is_reproducible_from_the_seed_and_the_saved_rng_state():
    drop = Dropout(0.1).train()
    x = torch.randn(1000)
    torch.manual_seed(7)
    first = drop(x)
    torch.manual_seed(7)
    assert torch.equal(drop(x), first)
    state = torch.get_rng_state()  # what --resume saves and restores
    after = drop(x)
    torch.set_rng_state(state)
    assert torch.equal(drop(x), after)


def test_dropout_gradient_and_eval_mode():
    drop = Dropout(0.1)
    x = torch.randn(500, requires_grad=True)
    y = drop.train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y / x).detach(), rtol=1e-5, atol=0)  # d(x * mask)/dx = mask
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x
    # bf16 in, bf16 out: x / (1 - p) computed in float32 and rounded once
    xb = torch.randn(500).to(torch.bfloat16)
    yb = drop.train()(xb)
    assert yb.dtype == torch.bfloat16
    kept = yb != 0
    assert torch.equal(yb[kept], (xb[kept].float() / 0.9).to(torch.bfloat16))


def test_prefix_cache_serves_the_frozen_output_and_keeps_names_apart():
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**dict(TINY, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)))
    model = NERModel(bert, ["O", "B-PER", "I-PER"], frz=2).train()  # training mode: the frozen part must still be deterministic
    ids, mask = padded_batch(99, [10, 10, 7, 7], seed=1)
    calls = []
    real = model.frozen_prefix
    model.frozen_prefix = lambda *a: calls.append(1) or real(*a)
    cache = PrefixCache(budget_gb=1)
    b = SimpleNamespace(input_ids=ids, attention_mask=mask, index=[0, 1, 2, 3])
    first = cache.prefix(model, b, "train")
    again = cache.prefix(model, b, "train")  # from the cache: no frozen compute
    assert len(calls) == 1
    real_pos = mask.bool()
    torch.testing.assert_close(again[real_pos], first[real_pos], rtol=0, atol=0)
    assert (again[~real_pos] == 0).all()  # padding is zero-filled, and masked out downstream
    # the same indices under another name are other windows: computed, not served from "train"
    other = SimpleNamespace(input_ids=ids.flip(0), attention_mask=mask.flip(0), index=[0, 1, 2, 3])
    torch.testing.assert_close(cache.prefix(model, other, "dev-en"), real(ids.flip(0), mask.flip(0)))
    assert len(calls) == 2
    # a budget too small for any row: nothing is kept, every call computes
    tiny = PrefixCache(budget_gb=1e-9)
    tiny.prefix(model, b)
    tiny.prefix(model, b)
    assert len(calls) == 4 and tiny.used == 0


FRESH_TENSOR_FAULTS = """
import resource, sys, torch
import minibert_ner.train  # as the commands run it: after the library is imported
from minibert_ner.speed import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(3):  # 64 MB, allocated and touched: the first rounds may fault the heap in
    torch.ones(2**24)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(2**24)  # allocated, written, freed: as a training step does with its activations
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_lets_the_next_step_reuse_pages_without_faults():
    faults = {how: int(subprocess.run([sys.executable, "-c", FRESH_TENSOR_FAULTS, how], capture_output=True,
                                      text=True, check=True).stdout) for how in ("default", "keep")}
    assert faults["default"] > 5 * 16384 * 0.9  # glibc gives the 64 MB back: every page faults again
    assert faults["keep"] < 16384 // 2, faults  # not even half of one tensor's pages
