"""The tables of `python -m minibert_ner.tools.experiments`: our F1 beside the paper's, plots, fertility.

What it does: gathers each run's results.json per table row and language (mean ± sd over seeds),
prints them as markdown beside the paper's numbers (PAPER, copied from Moon et al.'s Tables 1-7),
draws Figures 2-3 (mean dev F1 over epochs) as SVG, counts WordPiece fertility (Table 2's last
row), and writes one summary JSON per recipe. What it leaves out: deciding what to run
(experiments.py) and training (train.py).
"""
import json
import math
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data import read_conll
from ..runs import read_log, svg_plot

ZERO_SHOT = ["de", "en", "es", "nl"]  # the paper's column order in Tables 3-6

# The paper's numbers (F1 %), keyed like our rows: {table: {row: {lang: F1}}}.
_DE_EN_ES_NL = lambda *v: dict(zip(ZERO_SHOT, v))
_DE_ES_NL = lambda *v: dict(zip(["de", "es", "nl"], v))
PAPER = {
    "table1": {"BERT-SL": dict(en=91.2, es=87.5, de=82.7, nl=90.6),
               "BERT-ML": dict(en=91.3, es=87.9, de=83.3, nl=91.1)},
    "ontonotes": {"BERT-SL": dict(en=87.9, ar=68.7, zh=72.9), "BERT-ML": dict(en=88.3, ar=69.9, zh=74.1),
                  "BERT-SL^Eng 0-shot": dict(en=87.9, ar=10.7, zh=65.2),  # en: the SL model on its own language
                  "BERT-ML^2 0-shot": dict(en=61.0, ar=12.6, zh=65.6)},
    "table3": {"BERT-SL^Eng 0-shot": _DE_ES_NL(69.42, 73.62, 78.61),
               "BERT-ML^3 0-shot": _DE_EN_ES_NL(70.23, 72.57, 77.17, 79.76),
               "CL": _DE_EN_ES_NL(67.04, 73.30, 75.29, 81.76), "CL+LI": _DE_EN_ES_NL(68.94, 74.28, 73.68, 80.78),
               "LI": _DE_EN_ES_NL(71.28, 73.87, 75.40, 80.06), "PC": _DE_EN_ES_NL(67.91, 73.72, 73.68, 80.28),
               "PC+LI": _DE_EN_ES_NL(66.31, 74.79, 74.12, 79.53)},
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
    "english": {f"{task} #frz {k}": _DE_ES_NL(*v) for (task, k), v in {  # Table 7; aux rows' #frz: experiments.TABLE7
        ("ML", -1): (69.42, 73.62, 78.61), ("ML", 3): (71.42, 75.67, 80.38), ("ML", 6): (70.16, 73.74, 78.20),
        ("ML", 8): (65.45, 73.14, 77.05), ("ML", 12): (34.68, 53.72, 52.56),
        ("CL", 6): (67.71, 72.08, 76.92), ("CL", 8): (65.88, 72.06, 77.06),
        ("CL+LI", 6): (70.41, 73.03, 77.07), ("CL+LI", 8): (61.47, 71.80, 74.87),
        ("LI", -1): (69.83, 72.26, 74.47), ("LI", 6): (65.65, 72.91, 76.37), ("LI", 8): (68.90, 73.92, 77.92),
        ("PC", 6): (68.76, 73.34, 79.28), ("PC", 8): (67.02, 73.27, 76.82),
        ("PC+LI", 6): (60.07, 72.16, 76.86), ("PC+LI", 8): (64.16, 73.22, 76.06)}.items()},
    "fertility": {"mBERT cased (OntoNotes)": dict(en=1.8, ar=7.42, zh=2.31)},  # Table 2, last row
}


# The row each recipe's other rows are read against: a #frz level against nothing frozen (Tables 4-5),
# an auxiliary row against ML (Table 3) at the same #frz (Tables 6-7; ML's own #frz levels against -1),
# ML against SL (Table 1).
BASELINE = {"freeze": "#frz -1", "table3": "BERT-ML^3 0-shot", "aux": "ML #frz -1", "english": "ML #frz -1",
            "table1": "BERT-SL"}


def baseline(recipe, row):
    """The row that `row` of `recipe` is compared with (None: none, or the baseline itself)."""
    base = BASELINE.get(recipe)
    if recipe in ("aux", "english") and not row.startswith("ML "):
        base = "ML " + row.split(" ", 1)[1]  # "CL #frz 8" -> "ML #frz 8"
    return None if row == base else base


# Student's t distribution: the two-sided 5 % critical value for 1 ... 30 degrees of freedom
# (standard tables; 1.96, the normal's, beyond)
T_CRITICAL = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
              2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
              2.052, 2.048, 2.045, 2.042)


def t_critical(df):
    """The |t| a difference must reach to be called detectable (two-sided, 5 %), for df >= 1."""
    return T_CRITICAL[df - 1] if df <= len(T_CRITICAL) else 1.96


@dataclass
class Comparison:
    """One of the paper's comparisons on our seeds: `row` minus its baseline row, in one language."""
    row: str
    baseline: str
    lang: str
    difference: float   # mean(row) - mean(baseline), F1 points
    se: float           # its standard error: Student's pooled two-sample one
    seeds: tuple        # (seeds of row, seeds of baseline)
    paper: float | None  # the paper's difference between the same two rows, when it prints both
    verdict: str


def compare(row, base, paper=None):
    """`row` vs `base` (F1 fractions per seed, >= 2 each) by Student's two-sample t-test, read against the
    paper's difference: detectable (|t| beyond the 5 % point) with its sign "reproduced", with the other
    "opposite"; otherwise "not detectable", and "excludes the paper's" when the paper's difference lies
    outside our 95 % interval. Returns (difference, se, verdict)."""
    n, m = len(row), len(base)
    df = n + m - 2
    pooled = ((n - 1) * statistics.variance(row) + (m - 1) * statistics.variance(base)) / df
    se = 100 * math.sqrt(pooled * (1 / n + 1 / m))  # with n == m: sqrt(sd1^2/n + sd2^2/m)
    d = 100 * (statistics.mean(row) - statistics.mean(base))
    half = t_critical(df) * se  # the 95 % interval is d +- half
    if abs(d) > half:
        verdict = "detectable" if paper is None else "reproduced" if d * paper > 0 else "opposite to the paper"
    else:
        verdict = "not detectable" + ("; excludes the paper's" if paper is not None and abs(paper - d) > half else "")
    if paper is not None and abs(d) < 2 * se and min(n, m) < 5:  # issue 31: such pairs get up to 5 seeds
        verdict += "; add seeds"
    return d, se, verdict


def comparisons(recipe, split, table):
    """Every row of a summary's `table` ({row: {lang: {"values": [...]}}}) against the recipe's baseline."""
    paper = PAPER.get(recipe + ("-dev" if split == "dev" else ""), {})
    found = []
    for row, cells in table.items():
        base_row = baseline(recipe, row)
        for lang, cell in cells.items():
            base = table.get(base_row, {}).get(lang)
            if base is None or min(len(cell["values"]), len(base["values"])) < 2:
                continue
            ours, theirs = paper.get(row, {}), paper.get(base_row, {})
            paper_d = ours[lang] - theirs[lang] if lang in ours and lang in theirs else None
            d, se, verdict = compare(cell["values"], base["values"], paper_d)
            found.append(Comparison(row, base_row, lang, d, se, (len(cell["values"]), len(base["values"])), paper_d,
                                    verdict))
    return found


def format_comparisons(found, title):
    """The comparisons as markdown: difference, standard error, seeds, the paper's difference, verdict."""
    lines = [f"**{title}**", "", "| | | difference | se | t | seeds | paper | verdict |", "|---" * 8 + "|"]
    lines += [f"| {c.row} − {c.baseline} | {c.lang} | {c.difference:+.2f} | {c.se:.2f} | {c.difference / c.se if c.se else 0:+.1f} "
              f"| {c.seeds[0]} vs {c.seeds[1]} | {'–' if c.paper is None else f'{c.paper:+.2f}'} | {c.verdict} |"
              for c in found]
    return "\n".join(lines)


def model_label(model):
    """A readable model name: the folder, or its parent for packages that call it "model"."""
    folder = Path(model)
    return "random demo BERT" if not model else folder.parent.name if folder.name == "model" else folder.name


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


def format_table(table, columns, title, paper=None, seeds=None):
    """A markdown table of mean ± sd per cell, then the paper's rows for the same columns. A cell
    over another number of seeds than `seeds` (e.g. 5 where a comparison needed more) says so."""
    lines = [f"**{title}**", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    cell = lambda v: "{:.2f} ± {:.2f}".format(*mean_sd(v)) + (f" ({len(v)} seeds)" if seeds and len(v) != seeds else "")
    for row, cells in table.items():
        lines.append(f"| {row} | " + " | ".join(cell(cells[c]) if c in cells else "–" for c in columns) + " |")
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


def write_plots(name, runs, out, dest):
    """Figure 2 (zero-shot dev F1 per target over epochs) and Figure 3 (one plot per target, #frz)."""
    # finished seeds only (results.json written): a seed still in training would add its epochs so far
    folders = lambda run: [f for f in sorted((Path(out) / run.name).glob("seed-*")) if (f / "results.json").exists()] \
        or [Path(out) / run.name]
    target = lambda run: run.argv[run.argv.index("--target") + 1]
    plots = {}  # file name -> {label: mean dev F1 per epoch}
    base = [r for r in runs if r.row in ("BERT-ML^3 0-shot", "#frz -1")]
    if name in ("table3", "freeze") and base:
        plots[f"{name}-zero-shot-epochs.svg"] = ({target(r): folders(r) for r in base},
                                                "zero-shot dev F1 by target, no freezing")
    for t in sorted({target(r) for r in runs}) if name == "freeze" else []:
        plots[f"freeze-{t}.svg"] = ({r.row: folders(r) for r in runs if target(r) == t},
                                    f"zero-shot to {t}: dev F1 by #frz")
    for file, (curves, title) in plots.items():
        svg, plots[file] = plot_over_epochs(curves, title)
        (dest / file).write_text(svg, encoding="utf-8")
    return plots


def fertility(test_files, data, model):
    """Pieces per word ({vocab: {lang: pieces / word}}) and the share of words with an [UNK] piece,
    which fertility hides (a word the vocab cannot spell is one [UNK]: fertility 1, information 0),
    over {lang: test file}, with the mBERT cased vocab under --data and --model's (those that exist)."""
    from ..tokenizer import WordPieceTokenizer, says_lowercase
    from .tokenize import measure_fertility
    from ..unigram import load_tokenizer
    mbert = Path(data) / "mbert/bert-base-multilingual-cased/vocab.txt"
    vocabs = {"mBERT cased": lambda: WordPieceTokenizer.from_file(mbert) if mbert.exists() else None}
    if model:  # its WordPiece vocab.txt (cased or not, as it says) or its SentencePiece tokenizer.json
        folder = Path(model)
        kind = "sentencepiece" if not (folder / "vocab.txt").exists() else \
            "uncased" if says_lowercase(folder) else "cased"
        has_vocab = (folder / "vocab.txt").exists() or (folder / "tokenizer.json").exists()
        vocabs[f"{model_label(model)} ({kind})"] = lambda: load_tokenizer(folder) if has_vocab else None
    table, unk = {}, {}
    for label, load in vocabs.items():
        tok = load()
        if tok is None:
            print(f"fertility: no {label} vocabulary; left out", file=sys.stderr)
            continue
        for lang, path in test_files.items():
            sentences = [s.words for s in read_conll(path, lang)]
            words, pieces = measure_fertility(tok, sentences, label=f"{label}, {lang}")
            table.setdefault(label, {})[lang] = pieces / words
            unk_words = sum(len({w for i, w in zip(ids, owners) if i == tok.unk_token_id})
                            for ids, owners in tok.encode_batch_words(sentences))
            unk.setdefault(label, {})[lang] = unk_words / words
    return table, unk


def print_fertility(table, unk, langs, paper):
    """The two fertility tables (pieces per word, words with [UNK]) in markdown, the paper's row under the first."""
    as_cells = lambda t, scale: {k: {l: [v * scale / 100] for l, v in row.items()} for k, row in t.items()}
    print(format_table(as_cells(table, 1), langs, "WordPiece fertility (pieces per word, test files)",
                       paper).replace(" ± 0.00", "") + "\n")
    print(format_table(as_cells(unk, 100), langs, "words with an [UNK] piece (%)").replace(" ± 0.00", "") + "\n")


@dataclass
class Finished:
    """A recipe's runs once trained: what its report prints and records."""
    runs: list      # experiments.Run, in the recipe's order (name, row, ...)
    results: dict   # run name -> the results.json of each finished seed
    commands: list  # the train command line (argv) of each run
    n_layers: int   # the encoder's depth (what --frz levels mean)


def write_report(opts, done, columns, t0, fertility_files=None):
    """Print the recipe's tables (ours, then the paper's rows), the numbers behind its plots and
    its training time; write the SVG plots and RESULTS/<recipe>-<scale>.json (merged with the rows
    an earlier part of the same recipe wrote there), and return that summary. `done`: a Finished; t0:
    when this command began."""
    runs, results, commands, n_layers = done.runs, done.results, done.commands, done.n_layers
    dest = Path(opts.results)
    dest.mkdir(parents=True, exist_ok=True)
    tables = {"test": collect(runs, results)}
    if opts.recipe == "freeze":  # Table 4 is on dev, Table 5 on test
        tables["dev"] = collect(runs, results, "dev")
    for split, table in tables.items():
        paper = PAPER.get(opts.recipe + ("-dev" if split == "dev" else ""))
        print(format_table(table, columns, f"{opts.recipe}: {split} F1 (%), mean ± sd over seeds "
                           f"{opts.seeds}; {model_label(opts.model)}", paper, len(opts.seeds)) + "\n")
    summary = dict(recipe=opts.recipe, scale=opts.scale, model=opts.model, data=opts.data, n_layers=n_layers)
    if fertility_files:  # Table 2's last row: fertility on the OntoNotes test tokens
        summary["fertility"], summary["unk_words"] = fertility(fertility_files, opts.data, opts.model)
        print_fertility(summary["fertility"], summary["unk_words"], list(fertility_files), PAPER["fertility"])
    plots = write_plots(opts.recipe, runs, opts.out, dest)
    for file, curves in plots.items():  # the numbers behind each plot: Figures 2 and 3
        print(f"{dest / file}: mean dev F1 per epoch\n" + "\n".join(
            f"  {label:<10} " + " ".join(f"{f:6.2f}" for f in f1s) for label, f1s in curves.items()))
    # each run's own training time, as recorded when it ran (a rerun that reuses runs costs ~0)
    seconds = sum(r["seconds"] for rs in results.values() for r in rs)
    print(f"training time of these runs (as recorded when each ran): {seconds / 60:.1f} min; "
          f"this invocation: {(time.time() - t0) / 60:.1f} min")
    settings = {k: getattr(opts, k) for k in ("epochs", "lr", "batch_size", "max_sentences", "eval_sentences",
                                              "seeds", "precision")}
    summary.update(settings=settings, train_minutes=round(seconds / 60, 1), plots=plots,
                   tables={split: {row: {l: dict(zip(("mean", "sd"), mean_sd(v)), values=v) for l, v in cells.items()}
                                   for row, cells in t.items()} for split, t in tables.items()},
                   paper={k: v for k, v in PAPER.items() if k.startswith(opts.recipe)},
                   commands=["python -m minibert_ner.train " + shlex.join(argv) for argv in commands],
                   runs={name: [{k: v for k, v in r.items() if k != "config"} for r in rs]
                         for name, rs in results.items()})
    path = dest / f"{opts.recipe}-{opts.scale}.json"
    summary = merge_summary(path, summary)
    # the paper's comparisons over every row the summary holds (earlier parts of the recipe included)
    summary["comparisons"] = {split: [asdict(c) for c in comparisons(opts.recipe, split, table)]
                              for split, table in summary["tables"].items()}
    for split, found in summary["comparisons"].items():
        if found:
            print("\n" + format_comparisons([Comparison(**c) for c in found], f"{opts.recipe}: {split} F1, the paper's "
                  f"comparisons on our seeds (Student's t, two-sided 5 %; every row of {path})"))
    path.write_text(json.dumps(summary, indent=1))
    return summary


def merge_summary(path, new):
    """`new` with the rows, runs and commands of the summary already at `path` that it does not
    cover, so that a recipe run in parts (--rows, --targets, --frz) adds to one summary instead of
    each part replacing the last. Only a summary of the same setup (model, data, settings, layers)
    is kept; any other is replaced, and the user is told."""
    if not path.exists():
        return new
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # e.g. a write cut short: the runs re-print it whole
        print(f"{path}: written anew (the one there could not be read: {error})", file=sys.stderr)
        return new
    setup = ("recipe", "scale", "model", "data", "n_layers", "settings")
    parts = ("commands", "runs", "plots", "tables")
    # the seeds asked for are not the setup: every invocation reports every finished seed of its cells
    same = lambda k: old[k] == new[k] if k != "settings" else \
        isinstance(old[k], dict) and {**old[k], "seeds": None} == {**new[k], "seeds": None}
    if not isinstance(old, dict) or any(k not in old for k in setup + parts) or not all(same(k) for k in setup):
        print(f"{path}: written anew (the one there was for another model, data or settings)", file=sys.stderr)
        return new
    ours = {out_of(c) for c in new["commands"]}
    merged = dict(new, commands=[c for c in old["commands"] if out_of(c) not in ours] + new["commands"],
                  runs={**old["runs"], **new["runs"]}, plots={**old["plots"], **new["plots"]})
    merged["tables"] = {split: {row: {**old["tables"].get(split, {}).get(row, {}), **cells}
                                for row, cells in {**old["tables"].get(split, {}), **table}.items()}
                        for split, table in new["tables"].items()}
    merged["train_minutes"] = round(sum(r["seconds"] for rs in merged["runs"].values() for r in rs) / 60, 1)
    return merged


def out_of(command):
    """The --out folder of a train command line: what names a run across parts of a recipe."""
    argv = shlex.split(command)
    return argv[argv.index("--out") + 1]
