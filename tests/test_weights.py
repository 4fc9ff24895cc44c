"""Loading and saving checkpoints: parity with transformers on tiny and real weights, and clear errors."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from minibert_ner.heads import NERModel
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.weights import (CheckpointError, check_vocab_size, init_cloze_head, load_bert, read_header,
                                  read_mlm_head, read_tensors, save_bert)

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=40)


def padded_batch(lengths, vocab_size=99, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (len(lengths), max(lengths)), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0
    return ids, mask


@pytest.fixture
def hf_mlm(tmp_path):
    """A randomly initialised BertForMaskedLM that transformers itself saved as safetensors."""
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(**TINY)).eval()
    with torch.no_grad():  # a non-zero MLM bias, so the test would notice if it were not loaded
        model.cls.predictions.bias.normal_()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    return model, folder


def rename_to_tf_style(folder, out):
    """The same checkpoint with LayerNorm.gamma/beta, as TF-converted checkpoints have."""
    tensors = read_tensors(folder / "model.safetensors")
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in tensors.items()}
    out.mkdir()
    save_file(renamed, str(out / "model.safetensors"))
    (out / "config.json").write_text((folder / "config.json").read_text())
    return out


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", ["hf", "gamma_beta"])
def test_hidden_states_and_mlm_logits_match_transformers(hf_mlm, tmp_path, impl, variant):
    ref, folder = hf_mlm
    if variant == "gamma_beta":
        folder = rename_to_tf_style(folder, tmp_path / "tf")
        assert any(k.endswith("gamma") and k.startswith("bert.") for k in read_header(folder / "model.safetensors")[0])
    cfg = BertConfig.from_json(folder / "config.json")
    cfg.attn_implementation = impl
    bert = load_bert(folder, config=cfg).eval()
    ner = NERModel(bert, ["O"], cloze=True).eval()
    init_cloze_head(ner, read_mlm_head(folder))

    ids, mask = padded_batch([13, 7, 2])
    real = mask.bool()
    with torch.no_grad():
        out = ref(ids, attention_mask=mask, output_hidden_states=True)
        ours = bert.hidden_states(ids, mask)
        targets = torch.where(real, ids, torch.full_like(ids, -100))  # "mask" every real piece
        logits = ner.cloze_logits(ours[-1], targets)
    for i, (a, b) in enumerate(zip(ours, out.hidden_states)):
        d = (a - b).abs()[real].max().item()
        assert d < 1e-5, f"layer {i}: max abs diff {d:.2e}"
    d = (logits - out.logits[real]).abs().max().item()
    assert d < 1e-5, f"MLM logits: max abs diff {d:.2e}"


def test_every_key_is_accounted_for(hf_mlm):
    _, folder = hf_mlm
    bert = load_bert(folder, verbose=False)
    r = bert.load_report
    file_keys = set(read_header(folder / "model.safetensors")[0])
    assert set(r.loaded) | {k for k, _ in r.skipped} == file_keys
    assert not r.warnings
    assert all(k.startswith("cls.predictions.") for k, _ in r.skipped)


def test_real_minilm_matches_transformers(minilm, shared_data):
    """all-MiniLM-L6-v2, a real pretrained BERT, on a padded batch of real English sentences."""
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(str(minilm / "vocab.txt"), lowercase=True)
    sentences, words = [], []
    for line in (shared_data / "conll2003/en/eng.testa").read_text().splitlines():
        if not line.strip():
            if words:
                sentences.append(" ".join(words))
                words = []
            if len(sentences) == 8:
                break
        elif not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
    enc = [tok.encode(s).ids[:64] for s in sentences]
    T = max(map(len, enc))
    ids = torch.tensor([e + [0] * (T - len(e)) for e in enc])
    mask = torch.tensor([[1] * len(e) + [0] * (T - len(e)) for e in enc])
    assert mask.float().mean() < 0.95, "the batch should really be padded"

    ref = transformers.BertModel.from_pretrained(str(minilm), attn_implementation="eager").eval()
    for impl in ("eager", "sdpa"):
        cfg = BertConfig.from_json(minilm / "config.json")
        cfg.attn_implementation = impl
        bert = load_bert(minilm, config=cfg, verbose=False).eval()
        assert {k for k, _ in bert.load_report.skipped} == {"pooler.dense.weight", "pooler.dense.bias",
                                                          "embeddings.position_ids"}
        with torch.no_grad():
            want = ref(ids, attention_mask=mask).last_hidden_state
            got = bert(ids, mask)
        d = (got - want).abs()[mask.bool()].max().item()
        assert d <= 1e-4, f"{impl}: max abs diff {d:.2e} on real tokens"


def test_reader_equals_safetensors_library(hf_mlm):
    _, folder = hf_mlm
    ours = read_tensors(folder / "model.safetensors")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(ours)
        for k in f.keys():
            assert torch.equal(f.get_tensor(k), ours[k]), k


def test_fp16_checkpoint_loads_into_fp32_model(hf_mlm, tmp_path):
    _, folder = hf_mlm
    half = {k: v.half() for k, v in read_tensors(folder / "model.safetensors").items()}
    (tmp_path / "half").mkdir()
    save_file(half, str(tmp_path / "half/model.safetensors"))
    bert = load_bert(tmp_path / "half/model.safetensors", config=folder / "config.json", verbose=False)
    w = bert.embeddings.word_embeddings.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, half["bert.embeddings.word_embeddings.weight"].float())


# -- saving ------------------------------------------------------------------------------------


def test_saved_model_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    cfg = BertConfig(**TINY)
    ours = BertModel(cfg)
    save_bert(ours, tmp_path / "out")
    ref = transformers.BertModel.from_pretrained(str(tmp_path / "out"), add_pooling_layer=False).eval()
    ids, mask = padded_batch([9, 4])
    with torch.no_grad():
        d = (ref(ids, attention_mask=mask).last_hidden_state - ours.eval()(ids, mask)).abs()[mask.bool()].max()
    assert d < 1e-5, f"max abs diff {d:.2e}"
    # and it round-trips through our own loader, bit for bit
    back = load_bert(tmp_path / "out", verbose=False)
    for (n, a), b in zip(ours.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), n


# -- bad input ---------------------------------------------------------------------------------


def test_config_disagreeing_with_weights_names_key_and_shapes(hf_mlm):
    _, folder = hf_mlm
    wrong = BertConfig(**dict(TINY, intermediate_size=40))
    with pytest.raises(CheckpointError) as e:
        load_bert(folder, config=wrong)
    msg = str(e.value)
    assert "encoder.layer.0.intermediate.dense.weight" in msg and "[37, 32]" in msg and "[40, 32]" in msg


def test_missing_and_unexpected_keys_are_named(hf_mlm, tmp_path):
    _, folder = hf_mlm
    tensors = read_tensors(folder / "model.safetensors")
    del tensors["bert.encoder.layer.1.output.dense.bias"]
    tensors["bert.encoder.layer.7.output.dense.bias"] = torch.zeros(32)
    (tmp_path / "m").mkdir()
    save_file(tensors, str(tmp_path / "m/model.safetensors"))
    cfg = folder / "config.json"
    with pytest.raises(CheckpointError) as e:
        load_bert(tmp_path / "m/model.safetensors", config=cfg)
    assert "missing key 'encoder.layer.1.output.dense.bias', expected shape [32]" in str(e.value)
    assert "unexpected key 'bert.encoder.layer.7.output.dense.bias'" in str(e.value)
    bert = load_bert(tmp_path / "m/model.safetensors", config=cfg, strict=False, verbose=False)
    assert len(bert.load_report.warnings) == 2


def test_truncated_and_corrupt_files(hf_mlm, tmp_path):
    _, folder = hf_mlm
    data = (folder / "model.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="the file is truncated"):
        load_bert(tmp_path / "trunc.safetensors", config=folder / "config.json")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_bert(tmp_path / "junk.safetensors", config=folder / "config.json")
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01")
    with pytest.raises(CheckpointError, match="too short"):
        read_header(tmp_path / "tiny.safetensors")


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_bert(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no model.safetensors in this folder"):
        load_bert(tmp_path / "empty")


class Vocabulary:
    """A stand-in tokenizer: its size and the file that holds it."""

    def __init__(self, size, vocab_file):
        self.size, self.vocab_file = size, vocab_file

    def __len__(self):
        return self.size


def test_vocab_size_mismatch():
    check_vocab_size(Vocabulary(99, "vocab.txt"), BertConfig(**TINY), "m")
    with pytest.raises(CheckpointError, match="vocab.txt has 100 tokens but .* 99 rows"):
        check_vocab_size(Vocabulary(100, "vocab.txt"), BertConfig(**TINY), "m")
    # a truncated vocab.txt would split words differently: refused
    with pytest.raises(CheckpointError, match="vocab.txt has 98 tokens but .* 99 rows"):
        check_vocab_size(Vocabulary(98, "vocab.txt"), BertConfig(**TINY), "m")
    # a tokenizer.json may leave rows unused (multilingual-e5-small: 250,002 pieces, 250,037 rows), never exceed them
    check_vocab_size(Vocabulary(98, "tokenizer.json"), BertConfig(**TINY), "m")
    with pytest.raises(CheckpointError, match="tokenizer.json has 100 tokens"):
        check_vocab_size(Vocabulary(100, "tokenizer.json"), BertConfig(**TINY), "m")


# -- mBERT's exact layout ----------------------------------------------------------------------


def mbert_shaped_checkpoint(folder):
    """Random tensors with exactly bert-base-multilingual-cased's names and shapes (BertForPreTraining
    as converted from Google's TF checkpoint: gamma/beta, pooler, MLM head, NSP head; tied decoder)."""
    cfg = BertConfig()
    V, C, I, P = cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.max_position_embeddings
    g = torch.Generator().manual_seed(0)
    t = {}

    def add(name, *shape):
        t[name] = torch.randn(*shape, generator=g) * 0.02

    add("bert.embeddings.word_embeddings.weight", V, C)
    add("bert.embeddings.position_embeddings.weight", P, C)
    add("bert.embeddings.token_type_embeddings.weight", 2, C)
    add("bert.embeddings.LayerNorm.gamma", C)
    add("bert.embeddings.LayerNorm.beta", C)
    for i in range(cfg.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            add(p + m + ".weight", C, C)
            add(p + m + ".bias", C)
        add(p + "attention.output.LayerNorm.gamma", C)
        add(p + "attention.output.LayerNorm.beta", C)
        add(p + "intermediate.dense.weight", I, C)
        add(p + "intermediate.dense.bias", I)
        add(p + "output.dense.weight", C, I)
        add(p + "output.dense.bias", C)
        add(p + "output.LayerNorm.gamma", C)
        add(p + "output.LayerNorm.beta", C)
    add("bert.pooler.dense.weight", C, C)
    add("bert.pooler.dense.bias", C)
    add("cls.predictions.bias", V)
    add("cls.predictions.transform.dense.weight", C, C)
    add("cls.predictions.transform.dense.bias", C)
    add("cls.predictions.transform.LayerNorm.gamma", C)
    add("cls.predictions.transform.LayerNorm.beta", C)
    add("cls.seq_relationship.weight", 2, C)
    add("cls.seq_relationship.bias", 2)
    folder.mkdir()
    save_file(t, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    return t


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory is read from /proc")
def test_mbert_shaped_checkpoint_loads_every_tensor_within_memory(tmp_path):
    folder = tmp_path / "mbert"
    tensors = mbert_shaped_checkpoint(folder)
    size = (folder / "model.safetensors").stat().st_size
    assert size > 700e6
    del tensors
    # Peak memory is measured in a fresh process: its high-water RSS (VmHWM, which unlike
    # ru_maxrss is not inherited through fork) after loading, minus its RSS before.
    script = textwrap.dedent(f"""
        import json, re, torch
        from minibert_ner.weights import load_bert, read_mlm_head
        def hwm():
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
        before = hwm()
        bert = load_bert({str(folder)!r}, verbose=False)
        mlm = read_mlm_head({str(folder)!r})
        after = hwm()
        r = bert.load_report
        print(json.dumps(dict(peak=after - before, loaded=r.loaded, skipped=[k for k, _ in r.skipped],
                              mlm=sorted(mlm), sample=bert.encoder.layer[11].output.LayerNorm.weight[:3].tolist())))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    keys = set(read_header(folder / "model.safetensors")[0])
    assert set(res["loaded"]) | set(res["skipped"]) == keys
    assert len(res["loaded"]) == 5 + 16 * 12
    assert set(res["skipped"]) == {k for k in keys if k.startswith(("cls.", "bert.pooler."))}
    assert res["mlm"] == ["bias", "transform.LayerNorm.bias", "transform.LayerNorm.weight",
                          "transform.dense.bias", "transform.dense.weight"]
    expected = read_tensors(folder / "model.safetensors", {"bert.encoder.layer.11.output.LayerNorm.gamma"})
    assert res["sample"] == pytest.approx(expected["bert.encoder.layer.11.output.LayerNorm.gamma"][:3].tolist())
    print(f"peak RSS increase {res['peak'] / 1e6:.0f} MB for a {size / 1e6:.0f} MB file "
          f"({res['peak'] / size:.2f}x)")
    assert res["peak"] < 1.3 * size


def test_rows_load_only_those_embedding_rows_and_their_mlm_bias(hf_mlm):
    """--trim-vocab reads the kept rows straight from the file (the whole matrix is never in memory)."""
    from dataclasses import replace
    folder = hf_mlm[1]
    full = load_bert(folder, verbose=False)
    rows = [0, 1, 2, 7, 8, 9, 50, 98]  # runs of consecutive ids and single ones, the last row too
    config = replace(full.config, pad_token_id=0)
    small = load_bert(folder, config=config, verbose=False, rows=rows)
    assert small.config.vocab_size == len(rows)
    assert torch.equal(small.embeddings.word_embeddings.weight, full.embeddings.word_embeddings.weight[rows])
    assert torch.equal(small.encoder.layer[1].output.dense.weight, full.encoder.layer[1].output.dense.weight)
    assert torch.equal(read_mlm_head(folder, rows)["bias"], read_mlm_head(folder)["bias"][rows])
    with pytest.raises(CheckpointError, match="rows up to 99"):
        load_bert(folder, config=config, verbose=False, rows=[0, 99])
