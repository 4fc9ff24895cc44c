"""Files that cannot lie: every kind of broken safetensors file is refused with a message naming the
file, the tensor and what was expected, before a single byte reaches a parameter."""
import json
import math

import pytest
import torch
from safetensors.torch import save_file

from minibert_ner import safetensors_file
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.safetensors_file import CheckpointError, read_header, read_tensors
from minibert_ner.weights import load_bert, read_mlm_head, save_bert

TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=24, max_position_embeddings=20)
EMB = "embeddings.word_embeddings.weight"  # (40, 16): 640 values
FIRST = "embeddings.LayerNorm.bias"  # the first tensor in file order (save_file sorts by name)


@pytest.fixture
def folder(tmp_path):
    """A tiny intact checkpoint folder, saved by the library (keys without a prefix)."""
    torch.manual_seed(0)
    save_bert(BertModel(BertConfig(**TINY)), tmp_path / "m")
    return tmp_path / "m"


def split_file(path):
    """(header dict, data bytes) of a safetensors file, read without any checks."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), bytearray(raw[8 + n:])


def write_file(path, header, data):
    """Write any header (even a wrong one) over any data bytes, as the format lays them out."""
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + bytes(data))


def put_floats(header, data, name, index, values):
    """Overwrite F32 values of tensor `name` from flat position `index` on."""
    begin = header[name]["data_offsets"][0] + 4 * index
    data[begin:begin + 4 * len(values)] = torch.tensor(values, dtype=torch.float32).numpy().tobytes()


def first_two_of_shape(header, shape):
    """Two tensors of one shape, in file order: moving the second onto the first makes an overlap."""
    names = sorted((e["data_offsets"][0], k) for k, e in header.items()
                   if k != "__metadata__" and e["shape"] == shape)
    return names[0][1], names[1][1]


def nan(h, d):
    put_floats(h, d, EMB, 3, [math.nan])


def inf(h, d):
    put_floats(h, d, EMB, 0, [math.inf, -math.inf])


def negative_offsets(h, d):
    begin, end = h[FIRST]["data_offsets"]
    h[FIRST]["data_offsets"] = [begin - 8, end - 8]  # would read the header's last bytes as weights


def overlapping(h, d):
    a, b = first_two_of_shape(h, [16])
    h[b]["data_offsets"] = h[a]["data_offsets"]  # b would read a's bytes


def past_the_end(h, d):
    del d[-4:]  # a download cut short


def shifted_past_the_end(h, d):
    last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
    h[last]["data_offsets"] = [o + 64 for o in h[last]["data_offsets"]]


def hole(h, d):
    a, _ = first_two_of_shape(h, [16])
    del h[a]  # its bytes now belong to no tensor


def trailing_bytes(h, d):
    d.extend(b"\0" * 8)


def wrong_byte_count(h, d):
    h[EMB]["shape"] = [40, 15]


def negative_shape(h, d):
    h[EMB]["shape"] = [-40, -16]


def unknown_dtype(h, d):
    h[EMB]["dtype"] = "F8_E4M3"


def string_entry(h, d):
    h[EMB] = "F32"


def no_data_offsets(h, d):
    del h[EMB]["data_offsets"]


def one_offset(h, d):
    h[EMB]["data_offsets"] = h[EMB]["data_offsets"][:1]


def bad_metadata(h, d):
    h["__metadata__"] = ["format", "pt"]


BAD_FILES = [  # (how to break the file, what the message must say)
    (negative_offsets, rf"tensor '{FIRST}' has data_offsets \[-8, .*0 <= begin <= end"),
    (overlapping, r"tensor '.*' \(bytes \d+\.\.\d+\) overlaps tensor '.*'"),
    (past_the_end, r"tensor '.*' needs bytes \d+\.\.\d+ but the data section has \d+; the file is truncated"),
    (shifted_past_the_end, r"bytes \d+\.\.\d+ of the data section belong to no tensor"),
    (hole, r"bytes 0\.\.64 of the data section belong to no tensor"),
    (trailing_bytes, r"the tensors cover \d+; expected nothing after the last tensor"),
    (wrong_byte_count, rf"tensor '{EMB}' is F32\[40, 15\], 2400 bytes, but its data_offsets .* span 2560"),
    (negative_shape, rf"tensor '{EMB}' has shape \[-40, -16\]; expected a list of non-negative integers"),
    (unknown_dtype, rf"tensor '{EMB}' has dtype 'F8_E4M3'; expected one of F64, F32"),
    (string_entry, rf"tensor '{EMB}' is \"F32\"; expected an object with dtype, shape and data_offsets"),
    (no_data_offsets, rf"tensor '{EMB}' is .*; expected an object with dtype, shape and data_offsets"),
    (one_offset, rf"tensor '{EMB}' has data_offsets \[\d+\]; expected \[begin, end\]"),
    (bad_metadata, r"__metadata__ is not a JSON object"),
    (nan, rf"tensor '{EMB}' has 1 NaN and 0 infinite values out of 640"),
    (inf, rf"tensor '{EMB}' has 0 NaN and 2 infinite values out of 640"),
]


@pytest.mark.parametrize("breaking, message", BAD_FILES, ids=[f.__name__ for f, _ in BAD_FILES])
def test_bad_file_is_refused_naming_file_and_tensor(folder, breaking, message, monkeypatch):
    path = folder / "model.safetensors"
    header, data = split_file(path)
    breaking(header, data)
    write_file(path, header, data)
    for load in (lambda: load_bert(folder, verbose=False), lambda: read_tensors(path)):
        with pytest.raises(CheckpointError, match=message) as error:
            load()
        assert str(error.value).startswith(f"{path}: ")


def test_header_checks_run_before_any_byte_is_read(folder, monkeypatch):
    # A bad header must fail before the first readinto(): nothing half-loaded, nothing wasted.
    path = folder / "model.safetensors"
    header, data = split_file(path)
    hole(header, data)
    write_file(path, header, data)
    calls = []
    monkeypatch.setattr(safetensors_file, "read_into", lambda *a: calls.append(a))
    with pytest.raises(CheckpointError):
        load_bert(folder, verbose=False)
    assert calls == []


@pytest.mark.parametrize("header", [[], "F32", 3, None])
def test_header_of_the_wrong_json_type(tmp_path, header):
    path = tmp_path / "x.safetensors"
    write_file(path, header, b"")
    with pytest.raises(CheckpointError, match=rf"{path}: the header is a JSON \w+; expected an object"):
        read_header(path)


def test_integer_header_over_float_data_is_refused_by_the_model(folder):
    # "I32" over F32 bytes of the same size is a valid file, but the weights would be integers ~1e9.
    path = folder / "model.safetensors"
    header, data = split_file(path)
    header[EMB]["dtype"] = "I32"
    write_file(path, header, data)
    with pytest.raises(CheckpointError, match=rf"{path}: cannot load.*\n  dtype I32 for '{EMB}'.*floating-point"):
        load_bert(folder, verbose=False)
    with pytest.raises(CheckpointError, match=rf"dtype I32 for '{EMB}'"):
        load_bert(folder, strict=False, verbose=False)  # not a tolerable warning either
    assert read_tensors(path)[EMB].dtype == torch.int32  # the file alone cannot tell


def test_integer_mlm_head_is_refused(tmp_path):
    save_file({"cls.predictions.bias": torch.zeros(4, dtype=torch.int32)}, str(tmp_path / "h.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor 'cls.predictions.bias' is I32; expected floating"):
        read_mlm_head(tmp_path / "h.safetensors")


def test_double_overflowing_float32_is_refused(folder):
    # F64 data is converted on the way in; 1e300 would become inf in the float32 model.
    path = folder / "model.safetensors"
    tensors = read_tensors(path)
    tensors[EMB] = tensors[EMB].double()
    tensors[EMB][0, 0] = 1e300
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=rf"tensor '{EMB}' has 0 NaN and 1 infinite values"):
        load_bert(folder, verbose=False)


def test_huge_finite_values_are_not_mistaken_for_inf(folder):
    # The fast test sums the tensor; a sum that overflows must fall back to counting, not fail.
    path = folder / "model.safetensors"
    header, data = split_file(path)
    put_floats(header, data, EMB, 0, [3e38, 3e38])
    write_file(path, header, data)
    assert load_bert(folder, verbose=False).embeddings.word_embeddings.weight[0, 0] == 3e38


def test_intact_file_loads_bit_for_bit(folder, tmp_path):
    # Zero-size tensors share an offset and still tile the data section.
    tensors = read_tensors(folder / "model.safetensors")
    model = load_bert(folder, verbose=False)
    for name, value in model.state_dict().items():
        assert torch.equal(value, tensors[name]), name
    save_file({"a": torch.ones(2), "empty": torch.zeros(0, 3), "b": torch.ones(3)}, str(tmp_path / "z.st"))
    assert {k: tuple(t.shape) for k, t in read_tensors(tmp_path / "z.st").items()} == {
        "a": (2,), "empty": (0, 3), "b": (3,)}
