"""Recipes build the runs the paper describes, as train-CLI configs; one recipe runs end to end.

Dry-run tests read the bundled sample (data/sample, same layout per language) and, where the
real corpora matter (German's derived training file), ../shared/data through the fixture.
"""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from minibert_ner import experiments
from minibert_ner.cli import configs_from_argv
from minibert_ner.train import TrainConfig, train

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def build(recipe, tmp_path, *extra, data=SAMPLE, n_layers=6):
    """(runs, {run name: [TrainConfig per seed]}) of a recipe, as main() would build them."""
    opts = experiments.parse_options([recipe, "--model", "", "--data", str(data), "--out", str(tmp_path), *extra])
    files = experiments.Files(opts.data, opts.out, opts.eval_sentences, opts.max_sentences)
    runs = experiments.build_runs(recipe, files, opts, n_layers)
    return runs, {r.name: configs_from_argv(experiments.run_argv(r, opts), TrainConfig) for r in runs}


def langs(items):
    return sorted(lang for lang, _ in items)


def test_table3_leaves_out_exactly_the_target(tmp_path):
    runs, configs = build("table3", tmp_path)
    assert [r.name for r in runs] == ["zs-de", "zs-en", "zs-es", "zs-nl"]
    for run in runs:
        target = run.name[3:]
        for cfg in configs[run.name]:
            assert langs(cfg.train) == sorted({"de", "en", "es", "nl"} - {target})
            assert langs(cfg.dev) == langs(cfg.test) == [target] and cfg.target == [target]
            assert cfg.frz == -1 and cfg.aux == [] and cfg.unlabeled == []
    # the scale's seeds, each in its own folder
    assert [c.seed for c in configs["zs-de"]] == [1, 2]
    assert [Path(c.out).name for c in configs["zs-de"]] == ["seed-1", "seed-2"]


def test_table1_single_language_and_joint_runs(tmp_path):
    runs, configs = build("table1", tmp_path)
    for lang in ["en", "es", "de", "nl"]:
        cfg = configs[f"sl-{lang}"][0]
        assert langs(cfg.train) == langs(cfg.dev) == langs(cfg.test) == [lang]
    ml = configs["ml"][0]
    assert langs(ml.train) == langs(ml.dev) == langs(ml.test) == ["de", "en", "es", "nl"]
    assert {r.row for r in runs} == {"BERT-SL", "BERT-ML"}


def test_small_scale_settings_reach_the_config(tmp_path):
    _, configs = build("table3", tmp_path)
    small = experiments.SCALES["small"]
    cfg = configs["zs-nl"][0]
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.max_sentences) == \
        (small["epochs"], small["lr"], small["batch_size"], small["max_sentences"])
    _, configs = build("table3", tmp_path, "--eval-sentences", "5")
    dev = configs["zs-nl"][0].dev[0][1]  # a subsampled copy: the first 5 sentences
    assert [s.words for s in experiments.read_conll(dev, "nl")] == \
        [s.words for s in experiments.read_conll(SAMPLE / "nl" / "dev.txt", "nl")[:5]]


def test_freeze_levels_are_capped_at_the_layer_count():
    assert experiments.freeze_levels([-1, 0, 3, 5, 7, 11, 12], 6) == [-1, 0, 3, 5, 6]
    assert experiments.freeze_levels([-1, 0, 3, 5, 7, 11, 12], 12) == [-1, 0, 3, 5, 7, 11, 12]


def test_freeze_sweep_small_scale_is_minilms_levels(tmp_path):
    runs, configs = build("freeze", tmp_path, "--targets", "de")
    assert [configs[r.name][0].frz for r in runs] == [-1, 0, 1, 3, 5, 6]
    assert runs[0].name == "zs-de"  # #frz -1 is table3's run: same folder, trained once
    _, configs = build("freeze", tmp_path, "--targets", "de", "--scale", "paper", n_layers=6)
    assert [c[0].frz for c in configs.values()] == [-1, 0, 3, 5, 6]  # 7, 11, 12 capped at 6
    assert len(configs["zs-de"]) == 5  # the paper's 5 seeds


def test_aux_runs_read_the_targets_training_text_without_tags(tmp_path):
    runs, configs = build("aux", tmp_path, "--targets", "es", "--tasks", "CL+LI")
    by_row = {r.row: configs[r.name][0] for r in runs}
    assert sorted(by_row) == ["CL+LI #frz -1", "CL+LI #frz 3", "ML #frz -1", "ML #frz 3"]
    assert by_row["ML #frz 3"].aux == [] and by_row["ML #frz 3"].frz == 3
    cfg = by_row["CL+LI #frz 3"]
    assert cfg.aux == ["CL", "LI"] and cfg.frz == 3 and langs(cfg.train) == ["de", "en", "nl"]
    (lang, path), = cfg.unlabeled
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    first = experiments.read_conll(SAMPLE / "es" / "train.txt", "es")[0]
    assert lang == "es" and lines[0] == " ".join(first.words)  # words only: no tag column
    assert len(lines) == experiments.SCALES["small"]["max_sentences"]


def test_english_only_trains_on_english(tmp_path):
    runs, configs = build("english", tmp_path)
    assert {langs(c[0].train)[0] for c in configs.values()} == {"en"}
    assert {c[0].target[0] for c in configs.values()} == {"de", "es", "nl"}
    assert sorted({c[0].frz for c in configs.values()}) == [-1, 3, 6]


def test_real_data_layout_german_trains_on_the_derived_copy(tmp_path, shared_data):
    _, configs = build("table1", tmp_path, "--scale", "paper", data=shared_data)
    cfg = configs["sl-de"][0]
    assert cfg.train[0][1].endswith("derived-flydzy/train.txt")
    assert cfg.dev[0][1].endswith("deu.testa") and cfg.test[0][1].endswith("deu.testb")
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.max_sentences) == (20, 5e-5, 32, 0)


def test_dry_run_prints_train_command_lines_and_trains_nothing(tmp_path, capsys):
    def refuse(cfg):
        raise AssertionError("a dry run must not train")
    experiments.main(["freeze", "--dry-run", "--model", "", "--data", str(SAMPLE), "--out", str(tmp_path),
                      "--targets", "en"], train_fn=refuse)
    lines = capsys.readouterr().out.strip().splitlines()
    # the random demo BERT has 2 layers: the sweep -1 0 1 3 5 6 is capped to -1 0 1 2
    assert len(lines) == 4 and all(l.startswith("python -m minibert_ner.train ") for l in lines)
    assert "--frz 2" in lines[3] and "--target en" in lines[0] and "--seed 1 2" in lines[0]


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
    svg = (tmp_path / "results" / "freeze-nl.svg").read_text()
    assert svg.startswith("<svg") and "#frz 1" in svg and "polyline" in svg
    assert len(summary["plots"]["freeze-nl.svg"]["#frz 1"]) == 2  # mean dev F1 of each epoch
    assert "| #frz 1 |" in capsys.readouterr().out
    # a second invocation finds every run finished and trains nothing
    experiments.main(argv, train_fn=lambda cfg: pytest.fail("finished runs must be reused"))
    # ... unless a setting changed: then the runs are trained again, not silently reused
    retrained = []
    experiments.main(argv[:-1] + ["2e-3"], train_fn=lambda cfg: retrained.append(cfg.lr) or tiny_train(cfg))
    assert retrained == [2e-3] * 4


def test_fertility_on_real_files(tmp_path, shared_data, capsys):
    experiments.main(["fertility", "--data", str(shared_data), "--model", "", "--results", str(tmp_path)])
    table = json.loads((tmp_path / "fertility.json").read_text())["table"]["mBERT cased"]
    assert 1.0 < table["en"] < table["de"] < 2.5  # German compounds split more than English words
    assert table["ar"] > table["en"]
