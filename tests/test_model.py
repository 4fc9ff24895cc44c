"""BertModel against transformers' BertModel, and the behaviours a student should be able to rely on."""
import json

import pytest
import torch

from minibert_ner.model import BertConfig, BertModel

from conftest import DEVICES

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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_every_layer_matches_transformers(impl, device):
    torch.manual_seed(0)
    ref = transformers.BertModel(transformers.BertConfig(**TINY, attn_implementation="eager")).eval()
    ours = BertModel(BertConfig(**TINY, attn_implementation=impl)).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not missing and set(unexpected) <= {"pooler.dense.weight", "pooler.dense.bias",
                                               "embeddings.position_ids"}
    ref.to(device), ours.to(device)
    ids, mask = (t.to(device) for t in padded_batch(99, [17, 9, 3]))
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


def test_too_long_input_is_a_clear_error():
    model = BertModel(BertConfig(**TINY))
    with pytest.raises(ValueError, match="longer than max_position_embeddings"):
        model(torch.zeros(1, 41, dtype=torch.long))


def test_pooler_only_when_asked():
    assert BertModel(BertConfig(**TINY)).pooler is None
    m = BertModel(BertConfig(**TINY), add_pooler=True)
    h = m(torch.ones(2, 4, dtype=torch.long))
    assert m.pool(h).shape == (2, 32)
