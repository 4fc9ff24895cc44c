"""BertModel against transformers' BertModel, and the behaviours a student should be able to rely on."""
import json
import math

import pytest
import torch

from minibert_ner.model import BertConfig, BertModel, Dropout, Unpadded

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=40)


def padded_batch(vocab_size, lengths, seed=0):
    """Random ids with [CLS]-like first piece, padded to the longest row; mask 1 = real piece."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(1, vocab_size, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0
    return ids, mask


def max_diff_on_real(a, b, mask):
    return (a - b).abs()[mask.bool()].max().item()


def test_config_reads_google_and_hf_json(tmp_path):
    google = dict(vocab_size=119547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, directionality="bidi", pooler_type="first_token_transform")
    (tmp_path / "bert_config.json").write_text(json.dumps(google))
    c = BertConfig.from_json(tmp_path / "bert_config.json")
    assert (c.vocab_size, c.hidden_size, c.layer_norm_eps) == (119547, 768, 1e-12)
    hf = transformers.BertConfig(**TINY, layer_norm_eps=1e-7)
    hf.save_pretrained(tmp_path)
    c = BertConfig.from_json(tmp_path / "config.json")
    assert (c.vocab_size, c.intermediate_size, c.layer_norm_eps) == (99, 37, 1e-7)


def test_config_reads_the_real_mbert_config(shared_data):
    c = BertConfig.from_json(shared_data / "mbert/bert-base-multilingual-cased/bert_config.json")
    assert c == BertConfig()  # our defaults are mBERT-cased


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        BertConfig.from_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{\n  'vocab_size': 3\n}")
    with pytest.raises(ValueError, match=r"bad.json:2: not valid JSON"):
        BertConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a multiple"):
        BertConfig(hidden_size=30, num_attention_heads=4)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_every_layer_matches_transformers(impl):
    torch.manual_seed(0)
    ref = transformers.BertModel(transformers.BertConfig(**TINY, attn_implementation="eager")).eval()
    ours = BertModel(BertConfig(**TINY, attn_implementation=impl)).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not missing and set(unexpected) <= {"pooler.dense.weight", "pooler.dense.bias",
                                               "embeddings.position_ids"}
    ids, mask = padded_batch(99, [17, 9, 3])
    with torch.no_grad():
        want = ref(ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = ours.hidden_states(ids, mask)
    assert len(got) == len(want) == TINY["num_hidden_layers"] + 1
    for i, (a, b) in enumerate(zip(got, want)):
        d = max_diff_on_real(a, b, mask)
        assert d < 1e-5, f"layer {i}: max abs diff {d:.2e}"
    assert max_diff_on_real(ours(ids, mask), want[-1], mask) < 1e-5  # forward() runs packed: the same


def test_sdpa_and_eager_agree_in_training_mode_without_dropout():
    cfg = dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    eager = BertModel(BertConfig(**cfg, attn_implementation="eager")).train()
    sdpa = BertModel(BertConfig(**cfg, attn_implementation="sdpa")).train()
    sdpa.load_state_dict(eager.state_dict())
    ids, mask = padded_batch(99, [12, 5])
    a, b = eager(ids, mask), sdpa(ids, mask)
    assert max_diff_on_real(a, b, mask) < 1e-5
    # and their gradients agree too: the fused kernel is the same function
    a[mask.bool()].sum().backward()
    b[mask.bool()].sum().backward()
    for (n, p), q in zip(eager.named_parameters(), sdpa.parameters()):
        assert (p.grad - q.grad).abs().max() < 1e-4, n


def test_padding_does_not_change_real_positions():
    """A sentence's states must not depend on how much padding its batch needed."""
    model = BertModel(BertConfig(**TINY)).eval()
    ids, _ = padded_batch(99, [6])
    alone = model(ids)
    padded = torch.cat([ids, torch.zeros(1, 10, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 10)], dim=1).long()
    with_pad = model(padded, mask)[:, :6]
    assert (alone - with_pad).abs().max() < 1e-5


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


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("lengths", [[12, 5, 1, 9], [12, 5, 1, 9, 3, 3, 8, 12, 2, 7, 6, 4, 1, 11, 10, 5, 9, 2]])
def test_packed_layers_equal_the_padded_path_values_and_gradients(impl, lengths):
    """forward() runs padded batches packed (real pieces only, attention in groups of 8 rows of
    similar length); hidden_states() runs them padded. Same values at every real piece, zeros at
    the padding, and the same gradients."""
    cfg = BertConfig(**dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                     attn_implementation=impl)
    packed_model = BertModel(cfg).train()
    padded_model = BertModel(cfg).train()
    padded_model.load_state_dict(packed_model.state_dict())
    ids, mask = padded_batch(99, lengths)
    a, b = packed_model(ids, mask), padded_model.hidden_states(ids, mask)[-1]
    assert max_diff_on_real(a, b, mask) < 1e-5
    assert (a[~mask.bool()] == 0).all()
    w = torch.randn(a.shape[-1])
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


def test_too_long_input_is_a_clear_error():
    model = BertModel(BertConfig(**TINY))
    with pytest.raises(ValueError, match="longer than max_position_embeddings"):
        model(torch.zeros(1, 41, dtype=torch.long))


def test_pooler_only_when_asked():
    assert BertModel(BertConfig(**TINY)).pooler is None
    m = BertModel(BertConfig(**TINY), add_pooler=True)
    h = m(torch.ones(2, 4, dtype=torch.long))
    assert m.pool(h).shape == (2, 32)
