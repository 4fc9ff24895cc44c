"""Models by name: a local folder, or a Hugging Face hub id downloaded once into the hub's cache.

`model_folder("bert-base-multilingual-cased")` returns a folder that the rest of the library reads like
any model folder: config.json, model.safetensors, the vocabulary, and tokenizer_config.json /
special_tokens_map.json when the repo has them (they say whether the vocabulary is cased). The
vocabulary says which tokenizer the model uses (unigram.load_tokenizer): vocab.txt is WordPiece (mBERT,
tokenizer.py); without one, a tokenizer.json whose model is Unigram is SentencePiece (XLM-R's, as
intfloat/multilingual-e5-small has it, unigram.py).

  - A path that exists always wins over a hub id of the same name; it must hold a model.
  - Anything else is a hub id (`bert-base-multilingual-cased`, `google-bert/bert-base-multilingual-cased`,
    any BERT repo) at an optional revision (branch, tag or commit). `huggingface_hub.snapshot_download`
    fetches only the files above, never the repo's TF/Flax/ONNX copies, into its standard cache
    (~/.cache/huggingface/hub, moved by HF_HOME or HF_HUB_CACHE), with its progress bars. Everything
    a hub user expects works as usual: HF_ENDPOINT (a mirror), HF_HUB_OFFLINE=1 (cache only), HF_TOKEN
    or `hf auth login` for private and gated repos. huggingface_hub reads these variables once, when
    it is imported: set them before starting Python.
  - A repo with pytorch_model.bin but no model.safetensors (older BERTs) is converted once, with
    `torch.load(weights_only=True)` (no code in the pickle runs), into a folder beside the hub cache:
    ~/.cache/huggingface/minibert_ner/models--{org}--{name}/{commit}/. Delete it to convert again.
  - Every failure the user can fix (offline and not cached, an unknown id or revision, a repo or a
    folder without vocab.txt or weights) is one `ModelNotFound` whose message names the model and the
    next step. The huggingface_hub error stays on `error.__context__` for debugging.

Left out: sharded checkpoints (model-0000x-of-0000y.*), TF/Flax weights, a tokenizer.json of any
other model than WordPiece (beside a vocab.txt) or Unigram.
"""
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, HFValidationError,
                                    LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

from .weights import save_safetensors

__all__ = ["ModelNotFound", "check_model_folder", "model_folder"]

NEEDED = ("config.json", "vocab.txt")                                 # a repo without them is no use
SENTENCEPIECE = "tokenizer.json"                                      # ... unless it has a Unigram one
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # fetched when the repo has them
WEIGHTS = "model.safetensors"
HUB_NAME_PART = re.compile(r"[A-Za-z0-9][\w.-]*")  # an org or repo name: no leading '.', so never '..'


class ModelNotFound(ValueError):
    """No usable model under that name; the message names it and says what to do next."""


def _print_to_stderr(message):
    print(message, file=sys.stderr)


def model_folder(name_or_path, revision=None, log=_print_to_stderr):
    """A local folder holding config.json, the vocabulary and model.safetensors, for a folder or a hub id."""
    path = Path(name_or_path).expanduser()
    if path.exists():  # a local folder wins, even when a hub repo has the same name
        if revision is not None:
            raise ModelNotFound(f"{path} is a local folder; a revision ({revision}) applies to hub ids only")
        return check_model_folder(path)
    name = str(name_or_path)
    parts = name.split("/")
    if len(parts) > 2 or not all(HUB_NAME_PART.fullmatch(p) for p in parts):
        raise ModelNotFound(f"{name}: no such folder; pass a model folder or a hub id such as "
                            f"bert-base-multilingual-cased")
    return _from_hub(name, revision, log)


def check_model_folder(folder):
    """`folder` as a Path if it holds a model (config, vocab, weights), else ModelNotFound naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFound(f"{folder} is a file; pass the folder that holds config.json, vocab.txt (or a "
                            f"SentencePiece tokenizer.json) and model.safetensors")
    sentencepiece = (folder / SENTENCEPIECE).is_file() and not (folder / "vocab.txt").is_file()
    vocab = SENTENCEPIECE if sentencepiece else "vocab.txt"
    missing = [name for name in ("config.json", vocab, WEIGHTS) if not (folder / name).is_file()]
    if "config.json" in missing and (folder / "bert_config.json").is_file():
        missing.remove("config.json")  # Google's original name for it
    if not missing:
        return folder
    found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    if WEIGHTS in missing and (folder / "pytorch_model.bin").is_file():
        hint = ("minibert_ner reads safetensors only: save the model with transformers' save_pretrained, "
                "or give its hub id to have it converted")
    elif WEIGHTS in missing and (folder / "vocab.txt").is_file():  # e.g. Google's vocab + config download
        hint = ("give a hub id instead (e.g. bert-base-multilingual-cased, downloaded once into the "
                "Hugging Face cache), or put the weights in the folder as model.safetensors")
    else:
        hint = "pass a model folder or a hub id such as bert-base-multilingual-cased"
    raise ModelNotFound(f"{folder}: no {' or '.join(missing)} in this folder (found: {found}); {hint}")


def _from_hub(repo_id, revision, log):
    """Download (or find in the cache) what a BERT needs from a hub repo; convert .bin weights once."""
    snapshot = _download(repo_id, revision, [*NEEDED, *TOKENIZER_FILES, WEIGHTS])
    # snapshot = {hub cache}/models--{org}--{name}/snapshots/{commit}: one folder per commit
    commit = snapshot.name
    if not (snapshot / "vocab.txt").is_file():  # no WordPiece vocabulary: a SentencePiece model?
        snapshot = _download(repo_id, commit, [SENTENCEPIECE])
        if (snapshot / "config.json").is_file() and not _is_unigram(snapshot / SENTENCEPIECE):
            raise ModelNotFound(f"{repo_id}: the hub repo has no vocab.txt (WordPiece) and no tokenizer.json of a "
                                f"SentencePiece Unigram model; minibert_ner reads one of the two: pick another "
                                f"repo, or pass a model folder")
    if not (snapshot / "config.json").is_file():
        raise ModelNotFound(f"{repo_id}: the hub repo has no config.json; minibert_ner needs "
                            f"config.json, vocab.txt (a WordPiece vocabulary) or a Unigram tokenizer.json, and "
                            f"model.safetensors or pytorch_model.bin: check the name, or pass a model folder")
    folder = snapshot
    if not (snapshot / WEIGHTS).is_file():
        folder = snapshot.parents[2].parent / "minibert_ner" / snapshot.parents[1].name / commit
        if not folder.is_dir():
            _convert(repo_id, snapshot, folder, log)
    log(f"{repo_id}: commit {commit} in {folder}")
    return folder


def _is_unigram(path):
    """Is `path` a tokenizer.json whose model is Unigram (SentencePiece, XLM-R style)?"""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["model"]["type"] == "Unigram"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return False


def _download(repo_id, revision, patterns):
    """snapshot_download of the files matching `patterns`, its errors turned into one clear sentence."""
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError:
        message = f"{repo_id}: the hub repo has no revision {revision!r}; check the branch, tag or commit"
    except RepositoryNotFoundError:  # also a private or gated repo without a token: the hub says 401
        message = (f"{repo_id}: no such folder, and no such model on the hub ({constants.ENDPOINT}); "
                   f"check the name, log in (`hf auth login` or HF_TOKEN) if the repo is private or gated, "
                   f"or pass a model folder")
    except LocalEntryNotFoundError:  # offline, or the hub unreachable, and not (fully) in the cache
        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
               else f"the hub ({constants.ENDPOINT}) cannot be reached")
        message = (f"{repo_id}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; run once "
                   f"online to download it, or pass a model folder")
    except HfHubHTTPError as error:  # e.g. the hub is down (5xx)
        status = error.response.status_code if error.response is not None else "an error"
        message = f"{repo_id}: the hub ({constants.ENDPOINT}) answered HTTP {status}; try again later"
    except (EntryNotFoundError, HFValidationError, OSError) as error:  # a bad id, a broken cache, a full disk
        message = f"{repo_id}: {str(error).splitlines()[0]}"
    raise ModelNotFound(message) from None


def _convert(repo_id, snapshot, folder, log):
    """pytorch_model.bin -> folder/model.safetensors, with the small files copied beside it."""
    binary = _download(repo_id, snapshot.name, ["pytorch_model.bin"]) / "pytorch_model.bin"
    if not binary.is_file():
        raise ModelNotFound(f"{repo_id}: the hub repo has neither model.safetensors nor pytorch_model.bin "
                            f"(sharded and TF/Flax checkpoints are not read); pick another repo, or pass a "
                            f"model folder")
    log(f"{repo_id}: no model.safetensors in the repo; converting pytorch_model.bin once to {folder}")
    # weights_only=True unpickles tensors and plain containers only: a malicious pickle cannot run code
    state = torch.load(binary, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ModelNotFound(f"{binary}: not a state dict of tensors; pick another repo, or pass a model folder")
    # Write everything into a private folder, then rename it into place: processes converting at once
    # (torchrun) never see half a folder, and the loser of the race throws its copy away.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    for name in (*NEEDED, SENTENCEPIECE, *TOKENIZER_FILES):
        if (snapshot / name).is_file():
            shutil.copyfile(snapshot / name, tmp / name)  # follows the cache's symlinks to the blobs
    save_safetensors(state, tmp / WEIGHTS)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process renamed its copy first
        shutil.rmtree(tmp)
