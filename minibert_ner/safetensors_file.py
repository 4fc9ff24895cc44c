"""Reading a safetensors file, and refusing one that lies, before any byte reaches a parameter.

The format (github.com/huggingface/safetensors, "Format"): 8 bytes holding N (little-endian), N
bytes of JSON header, then the data section. The header maps each tensor name to
{"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]}, offsets counted in bytes from the
start of the data section; an optional "__metadata__" maps strings to strings. The format requires,
and `read_header` checks before anything is read:
  - the header is a JSON object whose entries have a known dtype, a shape of non-negative integers
    and two offsets 0 <= begin <= end;
  - each tensor's byte range holds exactly numel x itemsize bytes;
  - the ranges do not overlap and cover the data section exactly, with no hole and nothing after
    (a truncated download fails here, naming the first tensor it cuts).
Then every tensor is read with `readinto` straight into the memory that will hold it (no copy, so
loading costs the model's memory and nothing more) and checked to be finite right away: NaN or inf
weights are refused, naming the tensor and how many values are bad.

Why so strict: a loader that trusts the header turns a corrupt file into wrong weights without a
word (negative offsets read header bytes as weights, an I32 header reads F32 bits as integers).
Left out: writing (weights.save_safetensors uses the `safetensors` package), memory mapping, and
dtypes with no CPU tensor here (F8 variants, unsigned 16/32/64-bit).
"""
import json
import math
from pathlib import Path

import numpy
import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit; real headers are ~30 KB
CHECK_CHUNK = 1 << 22  # values per isfinite() pass when counting bad values: a 4 MB temporary at most
FIX = "the file is corrupt: download or save it again"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file, the tensor and what was expected."""


def read_header(path):
    """Parse and check a safetensors header: ({name: {"dtype", "shape", "data_offsets"}}, data start)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: {size} bytes is too short to be a safetensors file")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(f"{path}: header claims {n} bytes but the file has {size}; "
                                  f"truncated, or not a safetensors file")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path}: the header is not valid JSON; {FIX}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is a JSON {type(header).__name__}; expected an "
                              f"object of name -> {{dtype, shape, data_offsets}}; {FIX}")
    if not isinstance(header.pop("__metadata__", {}), dict):
        raise CheckpointError(f"{path}: __metadata__ is not a JSON object of strings; {FIX}")
    for name, entry in header.items():
        _check_entry(path, name, entry)
    _check_layout(path, header, size - 8 - n)
    return header, 8 + n


def _is_count(x):
    # JSON true/false arrive as Python bools, which are ints: refuse them explicitly
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_entry(path, name, e):
    """One header entry: known dtype, shape of counts, offsets 0 <= begin <= end spanning its bytes."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
        raise CheckpointError(f"{where} is {json.dumps(e)[:80]}; expected an object with dtype, "
                              f"shape and data_offsets; {FIX}")
    dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CheckpointError(f"{where} has dtype {dtype!r}; expected one of {', '.join(DTYPES)} "
                              f"(convert the file to float32)")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CheckpointError(f"{where} has shape {shape!r}; expected a list of non-negative "
                              f"integers; {FIX}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets))
            or offsets[0] > offsets[1]):
        raise CheckpointError(f"{where} has data_offsets {offsets!r}; expected [begin, end] with "
                              f"0 <= begin <= end; {FIX}")
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise CheckpointError(f"{where} is {dtype}{shape}, {nbytes} bytes, but its data_offsets "
                              f"{offsets} span {offsets[1] - offsets[0]}; {FIX}")


def _check_layout(path, header, data_size):
    """The byte ranges, in file order, must tile the data section: no overlap, no hole, no excess."""
    position, previous = 0, None  # where the next tensor must begin, and who ended there
    for begin, end, name in sorted((*e["data_offsets"], name) for name, e in header.items()):
        if begin < position:
            raise CheckpointError(f"{path}: tensor {name!r} (bytes {begin}..{end}) overlaps tensor "
                                  f"{previous!r} (ends at {position}); expected separate bytes; {FIX}")
        if begin > position:
            raise CheckpointError(f"{path}: bytes {position}..{begin} of the data section belong to no "
                                  f"tensor (before {name!r}); expected none unaccounted for; {FIX}")
        if end > data_size:
            raise CheckpointError(f"{path}: tensor {name!r} needs bytes {begin}..{end} but the data "
                                  f"section has {data_size}; the file is truncated: download it again")
        position, previous = end, name
    if position != data_size:
        raise CheckpointError(f"{path}: the data section has {data_size} bytes but the tensors cover "
                              f"{position}; expected nothing after the last tensor; {FIX}")


def read_into(f, name, entry, data_start, out):
    """Read one tensor's bytes from open file `f` into `out` (contiguous, same dtype and numel), then
    refuse it unless finite. No copy: the bytes land in `out`'s own memory."""
    f.seek(data_start + entry["data_offsets"][0])
    buf = out.view(-1).view(torch.uint8).numpy()  # the parameter's own memory, as bytes
    if f.readinto(buf) != buf.nbytes:
        raise CheckpointError(f"{f.name}: tensor {name!r}: unexpected end of file; download it again")
    check_finite(f.name, name, out)


def read_rows_into(f, name, entry, data_start, rows, out):
    """Read rows `rows` (sorted ids) of a 2-D tensor into `out` (len(rows) x its width, same dtype),
    one read per run of consecutive ids, so the whole tensor is never in memory (--trim-vocab keeps
    ~20,000 of multilingual-e5-small's 250,037 embedding rows)."""
    row_bytes = out[0].numel() * out.element_size()
    buf = out.view(-1).view(torch.uint8).numpy()
    start = 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and rows[end] == rows[end - 1] + 1:
            end += 1
        f.seek(data_start + entry["data_offsets"][0] + rows[start] * row_bytes)
        if f.readinto(buf[start * row_bytes:end * row_bytes]) != (end - start) * row_bytes:
            raise CheckpointError(f"{f.name}: tensor {name!r}: unexpected end of file; download it again")
        start = end
    check_finite(f.name, name, out)


def check_finite(path, name, t):
    """Refuse NaN or inf in a floating-point tensor, naming the file, the tensor and the count."""
    if not t.is_floating_point():
        return
    flat = t.view(-1)
    # One fast pass, no temporary: a finite sum proves every value finite. A non-finite sum (a bad
    # value, or a huge but finite tensor overflowing) is followed by an exact count, in chunks.
    # float32/64 are summed by numpy, on one thread: torch's threaded sum took ~3x the whole load
    # time on a busy 2-core machine (threads waiting for each other), numpy's adds ~10%.
    with numpy.errstate(over="ignore", invalid="ignore"):  # inf or NaN is the answer, not a warning
        total = flat.numpy().sum() if t.dtype in (torch.float32, torch.float64) else flat.sum().item()
    if math.isfinite(total):
        return
    nan = inf = 0
    for chunk in flat.split(CHECK_CHUNK):
        nan += int(chunk.isnan().sum())
        inf += int(chunk.isinf().sum())
    if nan or inf:
        raise CheckpointError(f"{path}: tensor {name!r} has {nan} NaN and {inf} infinite values out "
                              f"of {flat.numel()}; the training that wrote it diverged: use an "
                              f"earlier checkpoint or lower the learning rate")


def read_tensors(path, names=None):
    """Read tensors (all, or those in `names`) from a safetensors file into new CPU tensors."""
    header, start = read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, e in header.items():
            if names is None or name in names:
                t = torch.empty(e["shape"], dtype=DTYPES[e["dtype"]])
                read_into(f, name, e, start, t)
                out[name] = t
    return out
