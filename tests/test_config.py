"""config.py: TrainConfig's defaults and where they come from, the checks before any data is read,
and what --resume compares."""
import math
from dataclasses import fields, replace
from pathlib import Path

import pytest

from minibert_ner.config import RANGES, RUN_CONTROL, ConfigError, TrainConfig, check_config, check_device, run_info

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
GOOD = TrainConfig(train=[("en", str(SAMPLE / "en/train.txt"))], out="runs/x")


def test_the_papers_defaults():
    d = TrainConfig()
    assert (d.lr, d.batch_size, d.epochs, d.max_len, d.overlap, d.mask_p, d.frz) == (5e-5, 32, 20, 64, 8, 0.15, -1)
    assert d.head_lr == 0.0 and d.label_piece == "first" and not d.trim_vocab  # ours, off: the paper's recipe


def test_every_range_is_a_field_and_its_ends_pass():
    names = {f.name for f in fields(TrainConfig)}
    for option, field, low, high in RANGES:
        assert field in names and option == field.replace("_", "-")
        fit = dict(overlap=0) if field == "max_len" else dict(max_len=512) if field == "overlap" else {}
        check_config(replace(GOOD, **fit, **{field: low}))  # (overlap and max-len must also fit each other)
        check_config(replace(GOOD, **fit, **{field: high}))


@pytest.mark.parametrize("field, value", [("lr", math.nan), ("lr", -1.0), ("mask_p", 1.5), ("max_len", 2),
                                          ("warmup", 2.0), ("threads", -1), ("stop_after", -1),
                                          ("max_sentences", -5)])
def test_out_of_range_is_refused_naming_the_option(field, value):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} "):
        check_config(replace(GOOD, **{field: value}))


def test_settings_that_cannot_work_together():
    with pytest.raises(ConfigError, match="--overlap 62 must be below --max-len 64"):
        check_config(replace(GOOD, overlap=62))
    with pytest.raises(ConfigError, match="pick one"):
        check_config(replace(GOOD, resume=True, overwrite=True))
    with pytest.raises(ConfigError, match="--aux needs --unlabeled"):
        check_config(replace(GOOD, aux=["LI"]))
    with pytest.raises(ConfigError, match="not a setting"):
        check_config(replace(GOOD, allow_change=["epochz"]))
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        check_device("gpu0")


def test_run_info_holds_what_shapes_the_result_and_the_data_fingerprints():
    info = run_info(replace(GOOD, threads=2, quiet=True))
    assert not RUN_CONTROL & set(info["config"])  # how a run is carried out is not compared
    (path, fingerprint), = info["data"].items()
    assert path == str((SAMPLE / "en/train.txt").resolve()) and len(fingerprint["sha256"]) == 64
