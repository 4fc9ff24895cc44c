"""Checkpoints in and out: safetensors files in mBERT's / Hugging Face's key layout.

Loading is a rename plus a shape-checked copy, tensor by tensor (as nanoGPT's `from_pretrained`):
  - keys with or without the `bert.` prefix (BertForMaskedLM / BertForTokenClassification have it,
    BertModel does not);
  - `LayerNorm.gamma/beta` (TF-converted checkpoints) as well as `LayerNorm.weight/bias`;
  - the masked-LM head `cls.predictions.*` is not part of the encoder: `read_mlm_head` hands it to
    the cloze head (heads.py); a missing `cls.predictions.decoder.weight` means "tied to the word
    embeddings", as in BERT;
  - next-sentence-prediction weights, the pooler (unless asked for) and the `position_ids` buffer
    are reported and skipped;
  - anything else missing, unexpected or of the wrong shape is an error naming the key and both
    shapes (strict by default).

Reading the file is safetensors_file.py's job: it checks the whole header before any byte is
read, then `readinto`s each tensor straight into the parameter that will hold it, so loading a
714 MB mBERT file costs the model's memory and nothing more (a memory-mapped load would add the
mapped pages to the peak), and refuses NaN or inf weights. Here, every tensor's shape and kind
(floating point or not) are checked against the model before the first byte is copied.

Saving writes Hugging Face's layout (`bert.` prefix, `config.json`) so `transformers` can load what
we train. Left out: sharded checkpoints (`model-0000x-of-0000y.safetensors`), PyTorch `.bin` pickles.
"""
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from .files import write_json, written_aside
from .model import BertConfig, BertModel

# the file format and its checks live in safetensors_file.py; re-exported here for callers
from .safetensors_file import DTYPES, CheckpointError, check_finite, read_header, read_into, read_rows_into, read_tensors

__all__ = ["CheckpointError", "LoadReport", "check_vocab_size", "hf_config", "load_bert", "read_header",
           "read_mlm_head", "read_tensors", "save_bert", "save_safetensors"]


@dataclass
class LoadReport:
    """What `load_bert` did with every key of the file (kept on the model as `.load_report`)."""

    path: str
    loaded: list = field(default_factory=list)   # checkpoint keys copied into the encoder
    skipped: list = field(default_factory=list)  # (checkpoint key, why it was not needed)
    warnings: list = field(default_factory=list)  # missing/unexpected keys tolerated by strict=False


# ---------------------------------------------------------------------------------------------
# key names


def canonical_name(key):
    """Checkpoint key -> our module's key: drop `bert.`, rename LayerNorm gamma/beta."""
    if key.startswith("bert."):
        key = key[len("bert."):]
    if key.endswith("LayerNorm.gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith("LayerNorm.beta"):
        key = key[: -len("beta")] + "bias"
    return key


def _skip_reason(key, model):
    """Why a checkpoint key that the encoder does not hold may be skipped, or None."""
    if key.startswith("cls.predictions."):
        return "masked-LM head: kept for the cloze heads (read_mlm_head)"
    if key.startswith("cls.seq_relationship."):
        return "next-sentence-prediction head: not used"
    if key.startswith("pooler.") and model.pooler is None:
        return "pooler: not used for NER"
    if key.startswith("classifier."):
        return "a task head: loaded by the NER model that owns it (runs.py)"
    if key.endswith("position_ids"):
        return "a buffer of position indices, recomputed on the fly"
    return None


def _resolve(path, config):
    """A model folder or a .safetensors file (+ config) -> (weights file, BertConfig)."""
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            found = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
            raise CheckpointError(f"{path}: no model.safetensors in this folder (found: {found})")
        folder = path
    elif path.is_file():
        weights, folder = path, path.parent
    else:
        raise CheckpointError(f"{path}: no such model folder or file")
    if config is None:
        for name in ("config.json", "bert_config.json"):
            if (folder / name).is_file():
                config = folder / name
                break
        else:
            raise CheckpointError(f"{folder}: no config.json or bert_config.json; pass config=")
    if not isinstance(config, BertConfig):
        config = BertConfig.from_json(config)
    return weights, config


# ---------------------------------------------------------------------------------------------
# loading


def load_bert(path, config=None, strict=True, add_pooler=False, verbose=True, rows=None):
    """
    Build a BertModel from a model folder (config + model.safetensors) or a .safetensors file.

    config:  a BertConfig or the path of a config file; by default the folder's config.json
             (or Google's bert_config.json).
    strict:  every encoder parameter must be in the file and every key in the file must be used
             or knowingly skipped (see the module docstring). strict=False initialises the missing
             parameters as BERT does and ignores unknown keys, reporting both.
    rows:    keep only these word-embedding rows (sorted ids; --trim-vocab): the model's vocabulary
             is len(rows) pieces, read from the file row by row, and its pad_token_id must already
             be the new id (config.pad_token_id). None: every row.
    """
    weights, config = _resolve(path, config)
    if rows is not None:
        config = replace(config, vocab_size=len(rows))
    header, start = read_header(weights)
    if strict:
        # Allocate without initialising (every tensor is about to be overwritten): on the meta
        # device first, then real but empty memory. No second copy of the model ever exists.
        with torch.device("meta"):
            model = BertModel(config, add_pooler=add_pooler)
        model.to_empty(device="cpu")
    else:
        model = BertModel(config, add_pooler=add_pooler)
    params = model.state_dict(keep_vars=True)  # name -> the live Parameter, filled in place

    by_name = {canonical_name(k): k for k in header}
    problems, skipped, unexpected = [], [], []
    for name, key in by_name.items():
        if name not in params:
            reason = _skip_reason(name, model)
            (skipped if reason else unexpected).append((key, reason))
    for key, _ in unexpected:
        problems.append(f"unexpected key {key!r} {header[key]['dtype']}{header[key]['shape']}")
    missing = [n for n in params if n not in by_name]
    problems += [f"missing key {n!r}, expected shape {list(params[n].shape)}" for n in missing]
    # Shapes and kinds first, so a wrong file fails before a single byte is copied.
    word = "embeddings.word_embeddings.weight"
    for name, p in params.items():
        if name in by_name:
            e = header[by_name[name]]
            if name == word and rows is not None:  # a subset of the file's rows: each must be there
                if e["shape"][1:] != list(p.shape[1:]) or rows[-1] >= e["shape"][0] or \
                        DTYPES[e["dtype"]] != p.dtype:
                    problems.append(f"shape mismatch for {by_name[name]!r}: checkpoint {e['shape']} "
                                    f"{e['dtype']}, rows up to {rows[-1]} of width {p.shape[1]} in {p.dtype}")
            elif list(e["shape"]) != list(p.shape):
                problems.append(f"shape mismatch for {by_name[name]!r}: checkpoint {e['shape']}, "
                                f"model {list(p.shape)} (does the config match the weights?)")
            elif DTYPES[e["dtype"]].is_floating_point != p.is_floating_point():
                # e.g. an I32 header over F32 bytes: the weights would become integers ~1e9
                problems.append(f"dtype {e['dtype']} for {by_name[name]!r}: the model's {p.dtype} "
                                f"parameter expects floating-point data (F32, F16, BF16 or F64)")
    fatal = [m for m in problems if strict or m.startswith(("shape", "dtype"))]
    if fatal:
        raise CheckpointError(f"{weights}: cannot load into BertModel({_describe(config)}):\n  "
                              + "\n  ".join(fatal))

    with open(weights, "rb") as f, torch.no_grad():
        for name, p in params.items():
            if name not in by_name:
                continue
            key = by_name[name]
            if name == word and rows is not None:
                read_rows_into(f, key, header[key], start, rows, p.data)
            elif DTYPES[header[key]["dtype"]] == p.dtype:
                read_into(f, key, header[key], start, p.data)
            else:  # e.g. an fp16 checkpoint into an fp32 model: one tensor's temporary copy
                t = torch.empty(header[key]["shape"], dtype=DTYPES[header[key]["dtype"]])
                read_into(f, key, header[key], start, t)
                p.copy_(t)
                check_finite(weights, key, p)  # F64 -> F32 may overflow to inf

    report = LoadReport(str(weights), loaded=[by_name[n] for n in params if n in by_name],
                        skipped=skipped, warnings=problems)
    if verbose:
        print(f"loaded {len(report.loaded)} tensors from {weights}", file=sys.stderr)
        for key, reason in skipped:
            print(f"  skipped {key}: {reason}", file=sys.stderr)
        for m in problems:
            print(f"  warning: {m}", file=sys.stderr)
    model.load_report = report
    return model


def _describe(config):
    return (f"vocab {config.vocab_size}, hidden {config.hidden_size}, "
            f"{config.num_hidden_layers} layers, {config.max_position_embeddings} positions")


def read_mlm_head(path, rows=None):
    """
    The masked-LM head of a checkpoint, keys relative to `cls.predictions.`:
    transform.dense.{weight,bias}, transform.LayerNorm.{weight,bias}, bias, and decoder.weight
    only when the file stores an untied decoder. An empty dict when the file has no MLM head.
    rows: keep only these vocabulary entries of the output bias and decoder (--trim-vocab).
    """
    path = Path(path)
    weights = path / "model.safetensors" if path.is_dir() else path  # no config needed: names only
    header, _ = read_header(weights)
    keys = [k for k in header if canonical_name(k).startswith("cls.predictions.")]
    for key in keys:  # the cloze head's parameters are floating point, like the encoder's
        if not DTYPES[header[key]["dtype"]].is_floating_point:
            raise CheckpointError(f"{weights}: tensor {key!r} is {header[key]['dtype']}; expected "
                                  f"floating-point data (F32, F16, BF16 or F64): a corrupt header")
    tensors = read_tensors(weights, set(keys))
    head = {canonical_name(k)[len("cls.predictions."):]: t for k, t in tensors.items()}
    if rows is not None:  # the vocabulary-sized ones: bias, decoder.bias, decoder.weight
        head = {k: t.index_select(0, torch.tensor(rows)) if k in ("bias", "decoder.bias", "decoder.weight") else t
                for k, t in head.items()}
    return head



def init_cloze_head(model, mlm_state):
    """Copy a checkpoint's `cls.predictions.*` tensors (see weights.read_mlm_head) into the head."""
    head = model.cls.predictions
    own = head.state_dict()
    mlm_state = dict(mlm_state)
    if "decoder.bias" in mlm_state:
        # transformers' save_pretrained writes the output bias twice: as `bias` and as the decoder's
        # own `decoder.bias`, the same tensor. One bias is all BERT's head has.
        if "bias" in mlm_state and not torch.equal(mlm_state["bias"], mlm_state["decoder.bias"]):
            raise CheckpointError("cls.predictions.decoder.bias differs from cls.predictions.bias; BERT's masked-LM "
                             "head has one output bias, so this checkpoint is not a BERT MLM head")
        mlm_state.setdefault("bias", mlm_state["decoder.bias"])
        del mlm_state["decoder.bias"]
    decoder = mlm_state.pop("decoder.weight", None)
    if decoder is not None and not torch.equal(decoder, model.bert.embeddings.word_embeddings.weight.detach().cpu()):
        raise CheckpointError("cls.predictions.decoder.weight differs from the word embeddings: an untied decoder, "
                         "which BERT's masked-LM head (tied to the embeddings) cannot hold")
    for name, t in mlm_state.items():
        if name not in own or own[name].shape != t.shape:
            raise CheckpointError(f"cls.predictions.{name}: checkpoint {list(t.shape)} does not fit "
                             f"the cloze head {list(own[name].shape) if name in own else '(none)'}")
    missing = set(own) - set(mlm_state)
    if missing:
        raise CheckpointError(f"checkpoint MLM head lacks {sorted(missing)}")
    head.load_state_dict(mlm_state)

def check_vocab_size(tok, config, folder):
    """A vocabulary larger than the embedding matrix would index past it. A vocab.txt must fill it
    exactly: a truncated one would split words differently, silently. Rows past a tokenizer.json's
    pieces are allowed (multilingual-e5-small has 35 rows that belong to no piece)."""
    rows = config.vocab_size
    if len(tok) > rows or (len(tok) < rows and tok.vocab_file == "vocab.txt"):
        raise CheckpointError(f"{Path(folder) / tok.vocab_file} has {len(tok)} tokens but the model's word "
                              f"embeddings have {rows} rows; use the vocabulary the model was trained with")


# ---------------------------------------------------------------------------------------------
# saving


def save_safetensors(tensors, path, metadata=None):
    """Write tensors atomically (a crash mid-write leaves the old file intact)."""
    # safetensors refuses tensors that share memory (a tied decoder): store contiguous copies
    seen, clean = set(), {}
    for k, t in tensors.items():
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        clean[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    with written_aside(path) as tmp:
        save_file(clean, str(tmp), metadata={"format": "pt", **(metadata or {})})
        umask = os.umask(0)  # safetensors writes 0600; the rest of a model folder is 0666 minus the umask
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)


def hf_config(config, **extra):
    """Our BertConfig as a Hugging Face config.json dict (plus e.g. architectures, id2label)."""
    d = config.to_dict()
    d.pop("attn_implementation")
    return {**d, "model_type": "bert", **extra}


def save_bert(model, folder, prefix="", extra_tensors=None, **config_extra):
    """
    Save an encoder in Hugging Face's layout: folder/model.safetensors + folder/config.json.
    prefix "bert." gives BertFor*-style keys; extra_tensors (e.g. {"classifier.weight": ...}) are
    stored as given; config_extra goes into config.json (architectures=..., id2label=...).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {prefix + k: v for k, v in model.state_dict().items()}
    tensors.update(extra_tensors or {})
    save_safetensors(tensors, folder / "model.safetensors")
    cfg = hf_config(model.config, architectures=config_extra.pop("architectures", ["BertModel"]),
                    **config_extra)
    write_json(folder / "config.json", cfg)
    return folder
