"""Recipes build the runs the paper's tables describe, as train-CLI configs; recipes run end to end.

Dry-run tests read the bundled sample (data/sample, same layout per language) and, where the
real corpora matter (German's derived training file), ../shared/data through the fixture.
OntoNotes is licensed: its recipe runs on the invented CoNLL-2012 samples of test_ontonotes.
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from test_ontonotes import ARABIC, CHINESE, ENGLISH

from minibert_ner.cli import configs_from_argv
from minibert_ner.data import shared_data_dir
from minibert_ner.runs import read_log
from minibert_ner.tools import experiments
from minibert_ner.train import train

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def build(recipe, tmp_path, *extra, data=SAMPLE, n_layers=6):
    """(runs, {run name: [TrainConfig per seed]}) of a recipe, as main() would build them."""
    opts = experiments.parse_options([recipe, "--model", "", "--data", str(data), "--out", str(tmp_path), *extra])
    files = experiments.Files(opts)
    runs = experiments.build_runs(opts.recipe, files, opts, n_layers)
    files.write()  # the dev/test subsamples and raw target text the configs point at
    return runs, {r.name: configs_from_argv(experiments.run_argv(r, opts)) for r in runs}


def langs(items):
    return sorted(lang for lang, _ in items)


def test_table3_has_every_row_of_the_paper_and_leaves_out_the_target(tmp_path):
    runs, configs = build("table3", tmp_path)
    assert list(dict.fromkeys(r.row for r in runs)) == \
        ["BERT-SL^Eng 0-shot", "BERT-ML^3 0-shot", "LI", "CL", "CL+LI", "PC", "PC+LI"]
    for run in runs:
        for cfg in configs[run.name]:
            target = cfg.target[0]
            assert langs(cfg.dev) == langs(cfg.test) == [target] and cfg.frz == -1
            expected = ["en"] if run.key == "en-only" else sorted({"de", "en", "es", "nl"} - {target})
            assert langs(cfg.train) == expected  # the target's own training file is never in the command
            assert cfg.aux == ([] if run.key in ("ML", "en-only") else run.key.split("+"))
    assert "en-zs-en" not in configs  # English-only training has no English zero-shot cell
    # the scale's seeds, each in its own folder
    assert [c.seed for c in configs["zs-de"]] == [1, 2]
    assert [Path(c.out).name for c in configs["zs-de"]] == ["seed-1", "seed-2"]
    # ... the same folder when one seed is asked for alone (it finds, resumes or reuses that seed's run)
    _, alone = build("table3", tmp_path, "--seeds", "2")
    assert [(c.seed, c.out) for c in alone["zs-de"]] == [(2, configs["zs-de"][1].out)]


def test_table1_single_language_and_joint_runs(tmp_path):
    runs, configs = build("table1", tmp_path)
    for lang in ["en", "es", "de", "nl"]:
        cfg = configs[f"sl-{lang}"][0]
        assert langs(cfg.train) == langs(cfg.dev) == langs(cfg.test) == [lang]
    ml = configs["ml"][0]
    assert langs(ml.train) == langs(ml.dev) == langs(ml.test) == ["de", "en", "es", "nl"]
    assert {r.row for r in runs} == {"BERT-SL", "BERT-ML"}


def test_small_scale_settings_and_precision_reach_the_config(tmp_path):
    _, configs = build("table3", tmp_path)
    small = experiments.SCALES["small"]
    cfg = configs["zs-nl"][0]
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.max_sentences, cfg.precision) == \
        (small["epochs"], small["lr"], small["batch_size"], small["max_sentences"], "fp32")
    _, configs = build("table3", tmp_path, "--eval-sentences", "5", "--rows", "ML")
    dev = configs["zs-nl"][0].dev[0][1]  # a subsampled copy: the first 5 sentences
    assert [s.words for s in experiments.read_conll(dev, "nl")] == \
        [s.words for s in experiments.read_conll(SAMPLE / "nl" / "dev.txt", "nl")[:5]]


def test_grid_scale_uses_full_dev_and_test_random_batches_and_three_seeds(tmp_path, capsys):
    _, configs = build("table3", tmp_path, "--scale", "grid", "--rows", "ML")
    runs = configs["zs-nl"]
    assert [c.seed for c in runs] == [1, 2, 3]
    assert (runs[0].epochs, runs[0].batch_size, runs[0].max_sentences, runs[0].bucket, runs[0].precision) == \
        (6, 32, 1000, False, "fp32")
    assert runs[0].dev == [("nl", str(SAMPLE / "nl" / "dev.txt"))]  # the whole file, not a subsampled copy
    with pytest.raises(SystemExit):  # no default model at this scale: say which to pass
        experiments.parse_options(["table3", "--scale", "grid"])
    assert "--scale grid needs --model DIR" in capsys.readouterr().err


@pytest.mark.parametrize("n_layers, expected", [
    (12, [-1, 0, 1, 3, 5, 7, 8, 9, 11, 12]),  # mBERT: the paper's levels as they are
    (6, [-1, 0, 1, 2, 3, 4, 4, 5, 5, 6]),     # MiniLM: half, rounded up; 11 keeps one layer trainable
    (2, [-1, 0, 1, 1, 1, 1, 1, 1, 1, 2]),     # the demo BERT: only "none", "embeddings", "one", "all"
    (24, [-1, 0, 2, 6, 10, 14, 16, 18, 22, 24]),
])
def test_scale_frz_keeps_the_share_of_frozen_layers(n_layers, expected):
    assert [experiments.scale_frz(k, n_layers) for k in [-1, 0, 1, 3, 5, 7, 8, 9, 11, 12]] == expected


def test_freeze_sweep_is_figure3_scaled_to_the_model(tmp_path):
    runs, configs = build("freeze", tmp_path, "--targets", "de")
    assert [configs[r.name][0].frz for r in runs] == [-1, 0, 1, 2, 3, 4, 5, 6]  # every level of 6 layers
    assert runs[0].name == "zs-de"  # #frz -1 is table3's run: same folder, trained once
    _, configs = build("freeze", tmp_path, "--targets", "de", "--scale", "paper", n_layers=12)
    assert [c[0].frz for c in configs.values()] == [-1, 0, 1, 3, 5, 7, 9, 11, 12]
    assert len(configs["zs-de"]) == 5 and configs["zs-de"][0].precision == "bf16"  # the paper's 5 seeds
    _, configs = build("freeze", tmp_path, "--targets", "de", "--frz", "-1", "3", "9")  # this model's own levels
    assert [c[0].frz for c in configs.values()] == [-1, 3, 6]


def test_table6_has_six_rows_at_frz_minus_1_and_8(tmp_path):
    runs, configs = build("aux", tmp_path, "--targets", "es", n_layers=12)
    assert [r.row for r in runs] == [f"{t} #frz {k}" for t in ["ML", "LI", "CL", "CL+LI", "PC", "PC+LI"]
                                     for k in (-1, 8)]
    runs, configs = build("aux", tmp_path, "--targets", "es")  # 6 layers: the paper's 8 of 12 is 4
    by_row = {r.row: configs[r.name][0] for r in runs}
    assert by_row["ML #frz 4"].aux == [] and by_row["ML #frz 4"].frz == 4
    cfg = by_row["CL+LI #frz 4"]
    assert cfg.aux == ["CL", "LI"] and langs(cfg.train) == ["de", "en", "nl"]
    (lang, path), = cfg.unlabeled
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    first = experiments.read_conll(SAMPLE / "es" / "train.txt", "es")[0]
    assert lang == "es" and lines[0] == " ".join(first.words)  # words only: no tag column
    assert len(lines) == experiments.SCALES["small"]["max_sentences"]
    # --cloze-head reaches the rows with a cloze head (CL, PC, with or without LI) and no other
    with pytest.raises(SystemExit):  # a folder that is not there: refused before anything trains
        experiments.parse_options(["aux", "--model", "", "--cloze-head", str(tmp_path / "heads/mlm")])
    runs, configs = build("aux", tmp_path, "--targets", "es", "--cloze-head", "heads/mlm", "--dry-run")
    assert {r.row: configs[r.name][0].cloze_head for r in runs if r.row.endswith("#frz -1")} == {
        "ML #frz -1": "", "LI #frz -1": "", "CL #frz -1": "heads/mlm", "CL+LI #frz -1": "heads/mlm",
        "PC #frz -1": "heads/mlm", "PC+LI #frz -1": "heads/mlm"}


def test_table7_trains_on_english_only_with_every_auxiliary_row(tmp_path):
    runs, configs = build("english", tmp_path, n_layers=12)
    levels = {}
    for run in runs:
        levels.setdefault(run.key, set()).add(configs[run.name][0].frz)
        assert langs(configs[run.name][0].train) == ["en"]
    assert levels == {"ML": {-1, 3, 6, 8, 12}, "LI": {-1, 6, 8}, "CL": {6, 8}, "CL+LI": {6, 8},
                      "PC": {6, 8}, "PC+LI": {6, 8}}
    assert {c[0].target[0] for c in configs.values()} == {"de", "es", "nl"} and len(runs) == 16 * 3


def test_rows_targets_and_frz_cut_a_recipe_into_parts(tmp_path, capsys):
    runs, _ = build("table6", tmp_path, "--rows", "ML", "PC+LI", "--frz", "3", "--targets", "nl")
    assert [r.name for r in runs] == ["zs-nl-frz3", "zs-nl-PC+LI-frz3"]
    argv = ["aux", "--dry-run", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path), "--rows", "XX"]
    assert experiments.main(argv) == 2
    assert "its rows are ML LI CL CL+LI PC PC+LI" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table4", "table5", "table6", "table7", "wikiann"])
def test_dry_run_lists_every_command_with_its_precision_and_trains_nothing(tmp_path, capsys, name):
    def refuse(cfg):
        raise AssertionError("a dry run must not train")
    argv = [name, "--dry-run", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path / "runs")]
    assert experiments.main(argv, train_fn=refuse) == 0
    header, *rest = capsys.readouterr().out.strip().splitlines()
    lines = [line for line in rest if not line.startswith("#")]  # the commands, each after a line naming its row
    assert header.startswith(f"# {experiments.ALIASES.get(name, name)}: {len(lines)} runs x 2 seeds, precision fp32")
    assert lines and all(l.startswith("python -m minibert_ner.train ") and "--precision fp32" in l for l in lines)
    assert len(rest) == 2 * len(lines) + 1 and rest[-1].endswith(f"0 of {2 * len(lines)} seeds finished, {2 * len(lines)} left")


def test_dry_run_of_the_demo_bert_caps_the_sweep_at_its_layers(tmp_path, capsys):
    experiments.main(["freeze", "--dry-run", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path),
                      "--targets", "en"])
    lines = [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("#")]
    # the random demo BERT has 2 layers: -1 0 1 3 5 7 9 11 12 of 12 become -1 0 1 2
    assert len(lines) == 4 and "--frz 2" in lines[3] and "--target en" in lines[0] and "--seed 1 2" in lines[0]


def tiny_train(cfg):
    """The library's train() on a very small random BERT, so a recipe runs in seconds."""
    return train(replace(cfg, tiny=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64), quiet=True))


def test_freeze_recipe_runs_end_to_end_on_a_tiny_model(tmp_path, capsys):
    argv = ["freeze", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results"), "--targets", "nl", "--frz", "-1", "1",
            "--epochs", "2", "--max-sentences", "24", "--eval-sentences", "8", "--lr", "1e-3"]
    assert experiments.main(argv, train_fn=tiny_train) == 0
    summary = json.loads((tmp_path / "results" / "freeze-small.json").read_text())
    test = summary["tables"]["test"]
    assert sorted(test) == ["#frz -1", "#frz 1"] and len(test["#frz 1"]["nl"]["values"]) == 2
    assert 0 <= test["#frz -1"]["nl"]["mean"] <= 100
    assert (tmp_path / "runs" / "zs-nl-frz1" / "seed-2" / "dev_f1.svg").exists()
    # checkpoints go (a grid keeps only what its tables need), and the log says so
    assert not (tmp_path / "runs" / "zs-nl-frz1" / "seed-2" / "best").exists()
    printed = capsys.readouterr()
    assert f"{tmp_path / 'runs' / 'zs-nl-frz1' / 'seed-2'}: checkpoints removed" in printed.err
    svg = (tmp_path / "results" / "freeze-nl.svg").read_text()
    assert svg.startswith("<svg") and "#frz 1" in svg and "polyline" in svg
    assert len(summary["plots"]["freeze-nl.svg"]["#frz 1"]) == 2  # mean dev F1 of each epoch
    assert "| #frz 1 |" in printed.out
    # a second invocation finds every run finished and trains nothing
    experiments.main(argv, train_fn=lambda cfg: pytest.fail("finished runs must be reused"))
    # one part of the recipe (here one column) adds to the summary; the other rows stay in it
    one_part = argv[:argv.index("--frz") + 1] + ["1"] + argv[argv.index("--frz") + 3:]
    experiments.main(one_part, train_fn=lambda cfg: pytest.fail("finished runs must be reused"))
    merged = json.loads((tmp_path / "results" / "freeze-small.json").read_text())
    assert merged["tables"] == summary["tables"] and merged["runs"].keys() == summary["runs"].keys()
    assert len(merged["commands"]) == 2 and merged["train_minutes"] == summary["train_minutes"]
    # a third seed for one cell (issue 31: where a comparison stays within two standard errors): --seeds 3
    # trains only it, and every report from then on holds all three seeds of that cell
    trained = []
    experiments.main(one_part + ["--seeds", "3"], train_fn=lambda cfg: trained.append(cfg.seed) or tiny_train(cfg))
    assert trained == [3] and "| #frz 1 |" in capsys.readouterr().out
    experiments.main(argv, train_fn=lambda cfg: pytest.fail("finished runs must be reused"))
    printed = capsys.readouterr().out
    more = json.loads((tmp_path / "results" / "freeze-small.json").read_text())["tables"]["test"]
    assert len(more["#frz 1"]["nl"]["values"]) == 3 and len(more["#frz -1"]["nl"]["values"]) == 2
    assert "(3 seeds) |" in next(l for l in printed.splitlines() if l.startswith("| #frz 1 |"))
    assert "seeds" not in next(l for l in printed.splitlines() if l.startswith("| #frz -1 |"))
    # ... unless a setting changed: then the runs are trained again, not silently reused
    retrained = []
    # (a finished run does not resume: the attempt fails at once, then the seed trains with --overwrite)
    experiments.main(argv[:-1] + ["2e-3"], train_fn=lambda cfg: tiny_train(cfg) if cfg.resume else
                     retrained.append((cfg.lr, cfg.overwrite)) or tiny_train(cfg))
    assert retrained == [(2e-3, True)] * 4
    # and the summary of the old setting is replaced, not mixed with the new one
    assert f"{tmp_path / 'results' / 'freeze-small.json'}: written anew" in capsys.readouterr().err
    fresh = json.loads((tmp_path / "results" / "freeze-small.json").read_text())
    assert fresh["settings"]["lr"] == 2e-3 and len(fresh["commands"]) == 2
    # a summary cut short (a kill mid-write) is no traceback: the runs re-print it whole
    (tmp_path / "results" / "freeze-small.json").write_text('{"recipe": "fre')
    experiments.main(one_part[:-1] + ["2e-3"], train_fn=lambda cfg: pytest.fail("finished runs must be reused"))
    assert "could not be read" in capsys.readouterr().err
    assert list(json.loads((tmp_path / "results" / "freeze-small.json").read_text())["tables"]["test"]) == ["#frz 1"]


def test_ontonotes_recipe_says_what_is_missing(tmp_path, capsys):
    base = ["ontonotes", "--model", "", "--out", str(tmp_path / "runs")]
    assert experiments.main(base) == 2
    assert "ontonotes needs --ontonotes DIR" in capsys.readouterr().err
    assert experiments.main(base + ["--ontonotes", str(tmp_path / "conll-2012")]) == 2
    err = capsys.readouterr().err
    assert f"missing: {tmp_path / 'conll-2012' / 'train' / 'data' / 'arabic'}" in err and "LDC2013T19" in err
    # a dry run says the same, then lists the commands anyway
    assert experiments.main(base + ["--ontonotes", str(tmp_path / "conll-2012"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    commands = [line for line in out if line.startswith("python")]
    assert out[0].startswith("# ontonotes: 9 runs") and "--target ar" in commands[-2]
    assert not (tmp_path / "runs").exists()  # nothing to convert yet, so nothing written


def write_conll2012_tree(root):
    """The invented en/zh/ar samples in every split of a conll-2012/v4/data layout."""
    for split in ("train", "development", "test"):
        for language, text in [("english", ENGLISH), ("chinese", CHINESE), ("arabic", ARABIC)]:
            path = root / split / "data" / language / "annotations" / "nw" / "demo" / "00" / "demo.v4_gold_conll"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


@pytest.mark.filterwarnings("ignore:.*never seen in training")  # zero-shot: MONEY is only in English
def test_ontonotes_recipe_runs_table2_end_to_end(tmp_path, capsys):
    write_conll2012_tree(tmp_path / "conll-2012")
    argv = ["table2", "--model", "", "--ontonotes", str(tmp_path / "conll-2012"), "--data", str(shared_data_dir()),
            "--out", str(tmp_path / "runs"), "--seeds", "1", "--epochs", "1", "--lr", "1e-3"]
    assert experiments.main(argv, train_fn=tiny_train) == 0
    summary = json.loads((tmp_path / "runs" / "ontonotes-small.json").read_text())
    test = summary["tables"]["test"]
    assert sorted(test) == ["BERT-ML", "BERT-ML^2 0-shot", "BERT-SL", "BERT-SL^Eng 0-shot"]
    assert sorted(test["BERT-SL"]) == ["ar", "en", "zh"] and sorted(test["BERT-SL^Eng 0-shot"]) == ["ar", "zh"]
    converted = tmp_path / "runs" / "data" / "ontonotes" / "ar.test.txt"
    assert experiments.read_conll(converted, "ar")[0].words[0] == "زارَ"  # the vocalized treebank token
    if "mBERT cased" in summary["fertility"]:  # the shared data's vocab: short vowels cost pieces
        fertility = summary["fertility"]["mBERT cased"]
        assert fertility["ar"] > 2 * fertility["en"]
    assert "paper: BERT-ML^2 0-shot" in capsys.readouterr().out


def test_real_data_layout_german_trains_on_the_derived_copy(tmp_path, shared_data):
    _, configs = build("table1", tmp_path, "--scale", "paper", data=shared_data)
    cfg = configs["sl-de"][0]
    assert cfg.train[0][1].endswith("derived-flydzy/train.txt")
    assert cfg.dev[0][1].endswith("deu.testa") and cfg.test[0][1].endswith("deu.testb")
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.max_sentences) == (20, 5e-5, 32, 0)


def test_fertility_on_real_files(tmp_path, shared_data, capsys):
    experiments.main(["fertility", "--data", str(shared_data), "--model", "", "--results", str(tmp_path)])
    table = json.loads((tmp_path / "fertility.json").read_text())["table"]["mBERT cased"]
    assert 1.0 < table["en"] < table["de"] < 2.5  # German compounds split more than English words
    assert table["ar"] > table["en"]


def test_a_run_killed_half_way_is_resumed_not_restarted(tmp_path, capsys):
    """A session's time limit can stop a recipe in the middle of a run: the next call continues
    that run from its last epoch (same settings), or starts it over (other settings)."""
    tiny = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    cfg = replace(configs_from_argv(["--train", f"en={SAMPLE / 'en/train.txt'}", "--dev", f"en={SAMPLE / 'en/dev.txt'}",
                                     "--max-sentences", "16", "--batch-size", "8", "--epochs", "3",
                                     "--out", str(tmp_path / "run"), "--quiet"])[0], tiny=tiny)
    train(replace(cfg, stop_after=1))  # "killed" after its first epoch
    log = tmp_path / "run/log.jsonl"  # say the first epoch took 1000 s: the record must count it
    log.write_text(json.dumps(dict(json.loads(log.read_text()), seconds=1000.0)) + "\n")
    epochs_trained = []
    real_epochs = lambda c: epochs_trained.append(c.resume) or train(c)
    record = experiments.train_or_resume(cfg, real_epochs)
    assert epochs_trained == [True] and "training it again" not in capsys.readouterr().err
    assert [r["epoch"] for r in read_log(tmp_path / "run")] == [1, 2, 3] and record["seconds"] >= 1000
    # other settings: not resumable, so trained again from the start
    (tmp_path / "run/results.json").unlink()
    experiments.train_or_resume(replace(cfg, lr=cfg.lr * 2), real_epochs)
    assert epochs_trained == [True, True, False] and "training it again" in capsys.readouterr().err


def test_minutes_budget_stops_a_recipe_and_the_same_command_continues(tmp_path, monkeypatch):
    calls = []

    def fake_train(cfg):  # as train() does when its --minutes share is used up after one epoch
        calls.append(cfg.minutes)
        return dict(stopped=True, epoch=1)
    opts = experiments.parse_options(["table1", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path),
                                      "--minutes", "5"])
    files = experiments.Files(opts)
    runs = experiments.build_runs(opts.recipe, files, opts, 2)
    files.write()
    assert experiments.train_runs(runs, opts, fake_train) is None
    assert len(calls) == 1 and 4.9 < calls[0] <= 5


@pytest.mark.parametrize("recipe, target", [("table2", "de"), ("freeze", "ar"), ("english", "en")])
def test_a_target_outside_the_recipe_is_a_one_line_error(tmp_path, recipe, target):
    with pytest.raises(ValueError, match=f"--targets {target}: the .* recipe's languages are"):
        build(recipe, tmp_path, "--targets", target)


@pytest.mark.skipif(experiments.fcntl is None, reason="no fcntl (Windows): recipes take no locks there")
def test_two_processes_on_one_recipe_share_its_seeds(tmp_path, capsys):
    """A second `experiments` process on the same recipe (the other core) leaves the seed the first
    is training alone rather than training it into the same folder, waits for it, and trains it
    itself if that process ends without finishing it (killed: the kernel drops its lock)."""
    import subprocess
    opts = experiments.parse_options(["table1", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path),
                                      "--targets", "en", "--rows", "SL"])
    files = experiments.Files(opts)
    runs = experiments.build_runs(opts.recipe, files, opts, 2)
    files.write()
    seed1, seed2 = configs_from_argv(experiments.run_argv(runs[0], opts))
    trained = []

    def fake_train(cfg):
        trained.append(cfg.seed)
        if cfg.seed == 2:  # meanwhile the process that holds seed 1 is killed
            other.kill()
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return dict(best_dev_f1=0.5, test={"en": 0.4})
    hold = ("import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(60)")
    Path(seed1.out).parent.mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", hold, str(Path(seed1.out).parent / ".seed-1.lock")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        # a dry run says so, and leaves no trace (no lock file for the seed no one trains)
        experiments.main(["table1", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path),
                          "--targets", "en", "--rows", "SL", "--dry-run"])
        assert f"(sl-en); in training: seed 1 (process {other.pid})" in capsys.readouterr().out
        assert not (Path(seed2.out).parent / ".seed-2.lock").exists()
        results = experiments.train_runs(runs, opts, fake_train, sha="")
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err
    assert f"{seed1.out}: being trained by process {other.pid}; left to it for now" in err
    assert f"{seed1.out}: waiting for the process that trains it" in err
    assert trained == [2, 1]  # seed 2 first; seed 1 once its process was gone
    assert [r["config"]["seed"] for r in results["sl-en"]] == [1, 2]  # the tables in seed order
    assert experiments.claim(seed1.out) is None and experiments.claim(seed2.out) is None  # no lock left held
    experiments.release(seed1.out)
    experiments.release(seed2.out)


def test_a_run_counts_as_done_only_with_the_weights_it_trained_from(tmp_path, capsys):
    """The pocket mBERT is rebuilt each session and not bit for bit on another CPU: a run trained
    from other weights in the same folder is trained again, not reused."""
    import hashlib
    model = tmp_path / "pocket"
    model.mkdir()
    for name in ("config.json", "vocab.txt"):
        (model / name).write_text("{}")
    (model / "model.safetensors").write_bytes(b"build 1")
    opts = experiments.parse_options(["table1", "--model", str(model), "--data", str(SAMPLE), "--out",
                                      str(tmp_path / "runs"), "--targets", "en", "--rows", "SL", "--seeds", "1"])
    files = experiments.Files(opts)
    runs = experiments.build_runs(opts.recipe, files, opts, 2)
    files.write()
    trained = []

    def fake_train(cfg):
        trained.append(cfg.out)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return dict(best_dev_f1=0.5, test={"en": 0.4})
    experiments.train_runs(runs, opts, fake_train)
    record = json.loads((tmp_path / "runs" / "sl-en" / "seed-1" / "results.json").read_text())
    assert record["model_sha256"] == hashlib.sha256(b"build 1").hexdigest()
    experiments.train_runs(runs, opts, fake_train)
    assert len(trained) == 1  # the same weights: reused
    (model / "model.safetensors").write_bytes(b"build 2")  # the same pretrain command on another CPU
    experiments.train_runs(runs, opts, fake_train)
    assert len(trained) == 2 and "trained from other weights" in capsys.readouterr().err


def test_saved_runs_are_reprinted_without_the_model_folder(tmp_path, capsys):
    """A clone holds the grid's results but not the pocket mBERT (never committed): the recipe's
    command still prints its tables, from OUT/model.json and the runs' results.json."""
    model = tmp_path / "pocket"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    (model / "vocab.txt").write_text("")
    (model / "model.safetensors").write_bytes(b"weights")

    def fake_train(cfg):
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return dict(best_dev_f1=0.5, test={lang: 0.25 + 0.25 * cfg.seed for lang, _ in cfg.test})
    argv = ["table1", "--scale", "grid", "--model", str(model), "--data", str(SAMPLE), "--out", str(tmp_path / "runs"),
            "--targets", "en", "nl", "--seeds", "1", "2"]
    assert experiments.main(argv, train_fn=fake_train) == 0
    printed = capsys.readouterr().out
    assert "| BERT-SL | 62.50 ± 17.68 | – | – | 62.50 ± 17.68 |" in printed
    recorded = json.loads((tmp_path / "runs" / "model.json").read_text())
    assert recorded["n_layers"] == 2 and recorded["model"] == str(model)
    for path in model.iterdir():
        path.unlink()
    model.rmdir()
    assert experiments.main(argv, train_fn=lambda cfg: pytest.fail("nothing is left to train")) == 0
    assert capsys.readouterr().out.splitlines()[:8] == printed.splitlines()[:8]
    # a dry run says which seeds of each command are finished (here: all; a new seed: none)
    assert experiments.main(argv + ["3", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    commands, rows = [l for l in out if l.startswith("python")], [l for l in out[1:-1] if l.startswith("#")]
    assert len(commands) == 3 and all(c.endswith("--seed 1 2 3") for c in commands)
    assert len(rows) == 3 and all(r.endswith("; finished: seed 1 2") for r in rows)
    assert out[-1].startswith("# 6 of 9 seeds finished, 3 left")


def test_the_hours_left_price_each_row_at_its_own_finished_seeds():
    """--dry-run's estimate: a frozen level (faster) at its own seeds' minutes, a row not begun at the mean."""
    done = {"#frz -1": [1200.0, 1200.0], "#frz 3": [600.0], "#frz 5": []}
    left = {"#frz -1": 1, "#frz 3": 2, "#frz 5": 3}
    assert experiments.hours_left(done, left) == (1200 + 2 * 600 + 3 * 1000) / 3600
    assert experiments.hours_left({"#frz 5": []}, {"#frz 5": 3}) is None  # nothing finished: no estimate


def test_seeds_up_to_adds_seeds_where_a_comparison_stays_within_two_standard_errors(tmp_path, capsys):
    """Issue 31's rule: both sides of a comparison the paper makes (here ML vs SL on English, Table 1)
    that the report leaves within two standard errors get more seeds, up to --seeds-up-to in all."""
    trained = []

    def fake_train(cfg):  # ML 1 point above SL, seeds 2 points apart: d = 1, se 1.4, within two se
        trained.append((Path(cfg.out).parent.name, cfg.seed))
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        f1 = 0.50 + 0.02 * (cfg.seed % 2) + (0.01 if len(cfg.train) > 1 else 0.0)
        return dict(best_dev_f1=f1, best_epoch=1, test={lang: f1 for lang, _ in cfg.test})
    argv = ["table1", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path / "runs"), "--targets", "en"]
    assert experiments.main(argv + ["--seeds-up-to", "3"], train_fn=fake_train) == 0
    assert sorted(trained) == [("ml", 1), ("ml", 2), ("ml", 3), ("sl-en", 1), ("sl-en", 2), ("sl-en", 3)]
    summary = json.loads((tmp_path / "runs" / "table1-small.json").read_text())
    (en,) = [c for c in summary["comparisons"]["test"] if c["lang"] == "en"]
    assert en["seeds"] == [3, 3] and en["row"] == "BERT-ML" and en["baseline"] == "BERT-SL"
    assert "runs behind comparisons within two standard errors get seeds 3" in capsys.readouterr().err
    # run again: everything is finished, and nothing is asked beyond --seeds-up-to
    experiments.main(argv + ["--seeds-up-to", "3"], train_fn=lambda cfg: pytest.fail("nothing is left to train"))
    # asked for seed 3 alone, the cells reach 3 in all with seeds 1 and 2, which are there: nothing to train
    experiments.main(argv + ["--seeds", "3", "--seeds-up-to", "3"], train_fn=lambda cfg: pytest.fail("finished"))
    assert "get seeds 1 2 (--seeds-up-to 3)" in capsys.readouterr().err
