"""Every setting of a training run, in one dataclass: the single source of defaults.

`TrainConfig` is what `python -m minibert_ner.train` fills from its command line (cli.py reads the
defaults from here), what experiments build, and what a run folder records (run.json), so that
--resume can refuse to continue a run with other settings or other data (`run_info`).
"""
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .files import file_fingerprint

# The demo's BERT when no pretrained --model is given: small enough to train in a minute on 2 cores.
TINY_BERT = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                 max_position_embeddings=64)
DEMO_VOCAB_SIZE = 3000


class ConfigError(ValueError):
    """Settings that cannot work together; the message names the option and what to do."""


@dataclass
class TrainConfig:
    """Every knob of a run: the single source of defaults (the command line reads them from here).

    Where each default comes from: [paper] Moon et al.; [Devlin] the BERT fine-tuning recipe the
    paper says it follows; [ours] this library's choice."""

    model: str = ""              # pretrained model: a folder or a hub id; "" = a small random BERT (demo)
    revision: str = ""           # with a hub id: a branch, tag or commit ("" = the default branch)
    train: list = field(default_factory=list)      # [(lang, path)]
    dev: list = field(default_factory=list)
    test: list = field(default_factory=list)
    unlabeled: list = field(default_factory=list)  # [(lang, path)] raw target text for LI/CL/PC
    target: list = field(default_factory=list)     # zero-shot target languages
    aux: list = field(default_factory=list)        # any of "LI", "CL", "PC"
    # [ours] a folder whose masked-LM head starts the cloze head of CL/PC, for a --model without one
    # (pretrain --head-only's --out; the same vocabulary); "" = --model's own head, random if it has none
    cloze_head: str = ""
    frz: int = -1                # [paper] -1 nothing frozen, 0 embeddings, k + the lowest k layers
    lr: float = 5e-5             # [paper]
    # [ours] a separate peak lr for the heads (0 = lr): a pretrained encoder whose last layer's
    # outputs are small (multilingual-e5-small) leaves a head at lr 5e-5 predicting O for an epoch
    head_lr: float = 0.0
    batch_size: int = 32         # [paper]
    grad_accum: int = 1          # [ours] micro-batches per batch: less memory, the same update
    epochs: int = 20             # [paper]
    max_len: int = 64            # [paper] pieces per window
    overlap: int = 8             # [paper]
    mask_p: float = 0.15         # [paper] cloze masking probability
    # [paper] "first": a word's tag on its first piece. [ours] "content": on its first piece that is not
    # SentencePiece's bare "▁" ("." -> "▁" "." tags "."); the same as "first" for WordPiece
    label_piece: str = "first"
    # [ours] LI's examples: "all" = the [CLS] of the target text AND of the labelled source windows,
    # each with its language; "target" = the target text only, the paper's formula read literally,
    # where in zero-shot every example has the same label and the head learns a constant (README)
    li_on: str = "all"
    schedule: str = "linear"     # [Devlin] "linear": warmup, then linear decay to 0; "constant": lr throughout
    warmup: float = 0.1          # [Devlin] fraction of steps with linearly rising lr (schedule "linear")
    weight_decay: float = 0.01   # [Devlin]
    clip: float = 1.0            # [Devlin] gradient-norm clipping
    precision: str = "auto"      # [ours] fp32 | bf16 | fp16 | auto (bf16 where native, else fp16 on CUDA, fp32 on CPU)
    device: str = "auto"
    threads: int = 0             # CPU threads for PyTorch; 0 = its default (one per core)
    seed: int = 1
    out: str = ""                # the run folder (required; the demo uses runs/demo)
    lowercase: bool = False      # True only for uncased vocabularies (e.g. MiniLM)
    encoding: str = "utf-8"
    # [ours] Random batches (plain SGD sampling): length-bucketed ones pad less, but after one
    # CoNLL-2003 epoch they scored ~1 F1 lower (3 seeds, README "Performance"), and the packed
    # layers (speed.Unpadded) skip random batches' padding anyway. True = length-bucketed.
    bucket: bool = False
    cache_frozen: bool = True    # with frz >= 0, compute the frozen layers once and reuse them
    cache_gb: float = 4.0        # memory budget of that cache
    max_sentences: int = 0       # subsample each training file (0 = all): small experiments
    trim_vocab: bool = False     # [ours] keep only the vocabulary pieces the run's files use
    stop_after: int = 0          # stop after this many epochs (0 = never): resumable time-boxing
    minutes: float = 0.0         # stop at an epoch's end before this budget runs out (0 = no budget)
    # [ours] windows per forward pass when a run evaluates dev/test: the training batch. 128 was as fast
    # (dev evaluation 37.0 s vs 36.2 s at 32, e5-small, one thread) and raised a 12-layer run's peak
    # memory from 1.32 to 1.79 GB (README, trimming the vocabulary)
    eval_batch_size: int = 32
    tiny: dict = field(default_factory=dict)  # shape of the random demo BERT
    dropout: float = -1.0        # >= 0 overrides the checkpoint's dropout probabilities
    resume: bool = False         # continue the run in `out` from its last checkpoint
    overwrite: bool = False      # delete the run in `out` and start afresh
    allow_change: list = field(default_factory=list)  # fields --resume may see changed (or "data")
    quiet: bool = False


# (option, TrainConfig field, lowest, highest): the ranges check_config enforces
RANGES = [("epochs", "epochs", 1, 10**6), ("lr", "lr", 0.0, 1.0), ("head-lr", "head_lr", 0.0, 1.0),
          ("max-len", "max_len", 3, 512), ("overlap", "overlap", 0, 509), ("mask-p", "mask_p", 0.0, 1.0),
          ("warmup", "warmup", 0.0, 1.0), ("weight-decay", "weight_decay", 0.0, 1.0), ("clip", "clip", 0.0, 1e6),
          ("threads", "threads", 0, 4096), ("max-sentences", "max_sentences", 0, 10**9),
          ("stop-after", "stop_after", 0, 10**6), ("minutes", "minutes", 0.0, 1e9),
          ("eval-batch-size", "eval_batch_size", 1, 10**6), ("cache-gb", "cache_gb", 0.0, 1e6)]

# How a run is carried out, not what it computes: --resume accepts other values for these.
RUN_CONTROL = {"out", "resume", "overwrite", "allow_change", "stop_after", "minutes", "quiet", "threads", "device",
               "eval_batch_size", "cache_frozen", "cache_gb"}


def check_cloze_head(path):
    """--cloze-head must name a model folder (checked before any data is read, or any recipe row trains)."""
    if not (Path(path) / "model.safetensors").is_file():
        raise ConfigError(f"--cloze-head {path}: expected a model folder with model.safetensors (e.g. the --out of "
                          f"python -m minibert_ner.tools.pretrain --from MODEL --head-only)")


def check_config(cfg):
    """Refuse settings that cannot work, before any data is read."""
    if not cfg.out:
        raise ConfigError("no run folder: pass --out RUN_DIR (where checkpoints and logs go)")
    if not cfg.train:
        raise ConfigError("no training data: pass --train [LANG=]FILE... (after --target leaves out its files)")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.batch_size % cfg.grad_accum:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be a positive multiple of --grad-accum "
                          f"{cfg.grad_accum}")
    for option, value, low, high in RANGES:  # NaN fails every comparison, so it is refused too
        value = getattr(cfg, value)
        if not (low <= value <= high):
            raise ConfigError(f"--{option} {value}: expected a number from {low} to {high}")
    if cfg.overlap >= cfg.max_len - 2:
        raise ConfigError(f"--overlap {cfg.overlap} must be below --max-len {cfg.max_len} minus 2 ([CLS] and "
                          f"[SEP]): each window needs at least one new piece")
    if cfg.dropout != -1 and not 0 <= cfg.dropout < 1:
        raise ConfigError(f"--dropout {cfg.dropout}: expected a probability from 0 to below 1")
    check_device(cfg.device)
    if cfg.aux and not cfg.unlabeled:
        raise ConfigError("--aux needs --unlabeled LANG=FILE (raw target-language text)")
    if cfg.cloze_head and not {"CL", "PC"} & set(cfg.aux):
        raise ConfigError("--cloze-head starts the cloze head of --aux CL or PC; this run has neither")
    if cfg.cloze_head:
        check_cloze_head(cfg.cloze_head)
    if cfg.li_on not in ("all", "target"):
        raise ConfigError(f"--li-on {cfg.li_on!r}: use all or target")
    if cfg.label_piece not in ("first", "content"):
        raise ConfigError(f"--label-piece {cfg.label_piece!r}: use first or content")
    if cfg.schedule not in ("linear", "constant"):
        raise ConfigError(f"--schedule {cfg.schedule!r}: use linear or constant")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite deletes it: pick one")
    unknown = set(cfg.allow_change) - {f.name for f in fields(TrainConfig)} - {"data"}
    if unknown:
        raise ConfigError(f"--allow-change {' '.join(sorted(unknown))}: not a setting; use the names of "
                          f"TrainConfig's fields (e.g. epochs) or 'data'")


def check_device(name):
    """--device: auto, cpu, cuda or cuda:N, and a GPU must be there to be asked for."""
    import re

    import torch
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this PyTorch sees no CUDA GPU (torch {torch.__version__}"
                          f"{', a CPU-only build' if torch.version.cuda is None else ''}); use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: there are {torch.cuda.device_count()} GPUs (cuda:0 ...)")


def run_info(cfg):
    """What --resume compares: the settings that shape the result, and the data files' contents."""
    config = {k: v for k, v in asdict(cfg).items() if k not in RUN_CONTROL}
    files = {str(Path(p).resolve()) for key in ("train", "dev", "test", "unlabeled") for _, p in config[key]}
    info = dict(config=config, data={p: file_fingerprint(p) for p in sorted(files)})
    return json.loads(json.dumps(info, default=str))  # tuples -> lists, as it reads back
