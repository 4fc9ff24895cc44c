"""Heads and #frz freezing: what the paper's partial updates promise, checked one by one."""
import pytest
import torch

from minibert_ner.heads import NERModel, cloze_loss, ner_loss
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.train import TrainConfig, make_optimizer

CFG = dict(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
           intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.3,
           attention_probs_dropout_prob=0.3)
LABELS = ["O", "B-PER", "I-PER"]


def tiny_model(frz, **kw):
    torch.manual_seed(0)
    return NERModel(BertModel(BertConfig(**CFG)), LABELS, frz=frz, **kw)


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (4, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[2:, 7:] = 0
    labels = torch.randint(0, 3, (4, 10), generator=g).masked_fill(mask == 0, -100)
    return ids, mask, labels


def frozen_names(k):
    if k < 0:
        return set()
    return {n for n, _ in tiny_model(-1).named_parameters()
            if n.startswith("bert.embeddings.") or any(n.startswith(f"bert.encoder.layer.{i}.") for i in range(k))}


@pytest.mark.parametrize("k", [-1, 0, 1, 2, 3])
def test_frozen_tensors_are_bit_identical_after_training(k):
    model = tiny_model(k).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, TrainConfig(lr=1e-2))
    ids, mask, labels = batch()
    for _ in range(3):
        ner_loss(model(ids, mask), labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    frozen = frozen_names(k)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, before[n]), f"frozen {n} changed"
        else:
            assert not torch.equal(p, before[n]), f"trainable {n} did not change"


@pytest.mark.parametrize("k", [-1, 0, 1, 2, 3])
def test_optimizer_holds_exactly_the_trainable_tensors(k):
    model = tiny_model(k)
    opt = make_optimizer(model, TrainConfig())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    expected = {id(p) for n, p in model.named_parameters() if n not in frozen_names(k)}
    assert in_opt == expected
    # no decay on biases and LayerNorm weights
    no_decay = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert all(p.ndim == 1 for p in no_decay) and no_decay


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_no_gradient_buffer_and_no_backprop_below_the_boundary(k):
    model = tiny_model(k).train()
    ids, mask, labels = batch()
    prefix = model.frozen_prefix(ids, mask)
    assert prefix.grad_fn is None and not prefix.requires_grad  # backprop stops at the boundary
    ner_loss(model(ids, mask), labels).backward()
    for n, p in model.named_parameters():
        assert (p.grad is None) == (n in frozen_names(k)), n


@pytest.mark.parametrize("k", [0, 1, 2])
def test_dropout_is_off_below_the_boundary_even_in_training_mode(k):
    model = tiny_model(k)
    for _ in range(2):  # every model.train() call must keep the frozen part in eval mode
        model.train()
    ids, mask, _ = batch()
    a = model.bert.hidden_states(ids, mask)
    b = model.bert.hidden_states(ids, mask)
    for i in range(k + 1):  # embeddings + the k frozen layers: no dropout, same output
        assert torch.equal(a[i], b[i]), f"hidden state {i} differs below the boundary"
    for i in range(k + 1, len(a)):
        assert not torch.equal(a[i], b[i]), f"hidden state {i} should see dropout"
    assert all(not m.training for m in model.frozen_modules())
    assert model.classifier.training and model.dropout.training


def test_unfreezing_restores_everything():
    model = tiny_model(2).freeze(-1)
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert all(m.training for m in model.modules())


def test_frz_out_of_range():
    with pytest.raises(ValueError, match="between -1 and 3"):
        tiny_model(4)


def test_frozen_path_equals_full_forward():
    model = tiny_model(2).eval()
    ids, mask, _ = batch()
    full = model.bert(ids, mask)
    torch.testing.assert_close(model.encode(ids, mask), full, rtol=0, atol=0)
    torch.testing.assert_close(model.encode(ids, mask, prefix=model.frozen_prefix(ids, mask)), full,
                               rtol=0, atol=0)


def test_heads_shapes_and_losses():
    model = tiny_model(-1, languages=["de", "en"], cloze=True).eval()
    ids, mask, labels = batch()
    h = model.encode(ids, mask)
    assert model.ner_logits(h).shape == (4, 10, 3)
    assert model.language_logits(h).shape == (4, 2)
    targets = torch.full_like(ids, -100)
    targets[0, 3] = ids[0, 3]
    targets[1, 5] = ids[1, 5]
    logits = model.cloze_logits(h, targets)
    assert logits.shape == (2, 50)  # only the masked positions are scored
    assert cloze_loss(logits, targets).item() > 0
    empty = torch.full_like(ids, -100)
    assert cloze_loss(model.cloze_logits(h, empty), empty).item() == 0.0  # nothing masked: zero, not NaN
    # the cloze decoder is the word-embedding matrix itself
    assert model.cls.predictions.bias.shape == (50,)
    assert not any("decoder" in n for n, _ in model.named_parameters())


def test_ner_loss_ignores_x_pieces():
    logits = torch.randn(1, 4, 3)
    labels = torch.tensor([[-100, 1, -100, 2]])
    want = torch.nn.functional.cross_entropy(logits[0, [1, 3]], labels[0, [1, 3]])
    torch.testing.assert_close(ner_loss(logits, labels), want)


def test_missing_heads_are_clear_errors():
    model = tiny_model(-1)
    h = torch.zeros(1, 3, 16)
    with pytest.raises(RuntimeError, match="no language-ID head"):
        model.language_logits(h)
    with pytest.raises(RuntimeError, match="no cloze head"):
        model.cloze_logits(h, torch.zeros(1, 3, dtype=torch.long))
