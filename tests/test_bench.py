"""The benchmark runs every section end to end on a tiny random BERT and prints the table.

No timing is asserted here (timings belong to the benchmark, on a quiet machine); this only keeps
`python -m minibert_ner.tools.bench` from rotting: every section, every row, both sides, valid JSON.
"""
import importlib.util
import json
import time
from pathlib import Path

import torch

from minibert_ner.device import native_bf16
from minibert_ner.model import BertConfig
from minibert_ner.tools.bench import Row, build_parser, main, print_table, run, train_flops

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "en"
HAS_PEER = importlib.util.find_spec("transformers") is not None

EXPECTED = {  # section prefix -> measures it must print
    "train step fp32": {"real tokens/s", "sentences/s", "MFU"},
    "train step bf16": {"real tokens/s", "sentences/s", "MFU"},
    "inference fp32": {"real tokens/s", "sentences/s"},
    "tokenizer from scratch": {"words/s"},
    "tokenizer fast path": {"words/s"},
    "load ": {"peak RSS increase, MB", "peak / file size (A ours, B peer)"},
    "1 training epoch": {"sentences/s", "dev F1 after the epoch"},
    "#frz=1 fp32": {"steps ≥ epoch 2, sentences/s"},
    "train() #frz=1": {"epoch 1 sentences/s", "epochs ≥ 2 sentences/s"},
    "fine-tuning 1 epochs": {"test F1 (best dev epoch)", "best epoch", "wall seconds (training + dev evals)"},
}


def tiny_argv(tmp_path, *extra):
    return ["--model", "random", "--train", str(SAMPLE / "train.txt"), "--dev", str(SAMPLE / "dev.txt"),
            "--test", str(SAMPLE / "test.txt"), "--max-sentences", "8", "--batch-size", "4", "--steps", "2",
            "--warmup", "1", "--repeats", "2", "--eval-batch-size", "8", "--checkpoint", "model",
            "--threads", "2", "--finetune-epochs", "1", "--json", str(tmp_path / "rows.json"), *extra]


def test_every_section_prints_its_rows(tmp_path, capsys):
    rows = run(build_parser().parse_args(tiny_argv(tmp_path, "--section", "all", "--precision", "fp32", "bf16")))
    out = capsys.readouterr().out
    assert "torch threads 2" in out and "A: minibert_ner" in out
    for prefix, measures in EXPECTED.items():
        if prefix.startswith("inference bf16"):
            continue
        found = {r.measure.split(", %")[0] for r in rows if r.section.startswith(prefix)}
        assert measures <= found, f"section {prefix!r}: expected {measures}, printed {found}"
        assert any(line.startswith(prefix) for line in out.splitlines()), f"{prefix!r} missing from:\n{out}"
    for r in rows:
        for cell in (r.a, r.b, r.ratio):
            assert cell is None or (cell[0] == cell[0] and cell[0] >= 0), f"bad number in {r}"
        if HAS_PEER and "cache" not in r.section and r.measure != "same tag as peer, % of words":
            assert r.b is not None, f"no peer measurement in {r}"
    mfu = [r.a[0] for r in rows if r.measure.startswith("MFU")]
    # printed and positive; no upper bound: it is a ratio of two timings (the step's and the matmul
    # peak's), and on a CPU without native bf16, under load, the emulated bf16 peak once measured low
    # enough to read 105 % (AVX2 EPYC, two other jobs running)
    assert len(mfu) == 2 and all(m > 0 for m in mfu), mfu
    # ...and the bf16 row says when its yardstick is an emulation rather than the hardware
    bf16_mfu = [r.measure for r in rows if r.measure.startswith("MFU") and "bf16" in r.section]
    assert len(bf16_mfu) == 1 and ("emulated" in bf16_mfu[0]) == (not native_bf16(torch.device("cpu"))), bf16_mfu
    # same weights and windows: at inference the two implementations tag every word alike
    agree = [r.a[0] for r in rows if r.measure == "same tag as peer, % of words"]
    assert agree == ([100.0, 100.0] if HAS_PEER else [])
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert [r["measure"] for r in saved] == [r.measure for r in rows]


def test_without_peer_only_column_a_is_filled(tmp_path, capsys):
    rows = run(build_parser().parse_args(tiny_argv(tmp_path, "--section", "step", "--precision", "fp32", "--no-peer")))
    assert {r.measure.split(", %")[0] for r in rows} == {"real tokens/s", "sentences/s", "MFU"}
    assert all(r.b is None and r.ratio is None and r.a[0] > 0 for r in rows)
    assert "transformers" in capsys.readouterr().out  # the header still names both columns


def test_profile_prints_the_costliest_operators(tmp_path, capsys):
    main(tiny_argv(tmp_path, "--section", "step", "--precision", "fp32", "--no-peer", "--profile", "5"))
    err = capsys.readouterr().err
    table = err[err.index("profile: train step fp32"):].splitlines()[1:6]
    assert len(table) == 5 and all("%" in line and "calls" in line for line in table), err[-2000:]


def test_help_explains_the_numbers():
    text = build_parser().format_help()
    for term in ("real tokens/s", "padding EXCLUDED", "median", "--random-mbert", "--frz", "--section",
                 "--finetune-precision", "--profile"):
        assert term in text


def test_table_aligns_columns(capsys):
    print_table([Row("s", "speed", (1234.5, 3.0), (1000.0, 0.0), (1.2345, 1.0), "≥ 1.0"),
                 Row("s", "other", None, None)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "s"
    assert "1,234 ±3%" in lines[3] and "1.23 ±1%" in lines[3] and "—" in lines[4]
    assert len({len(line) for line in (lines[0], lines[3], lines[4])}) == 1


def test_train_flops_counts_matmuls_of_real_pieces():
    cfg = BertConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=3, num_attention_heads=2)
    # one window of 2 pieces: per layer 2*2*(4*16 + 2*4*8) + 4*4*4 = 512 + 64 = 576 forward FLOPs;
    # classifier 2*2*4*3 = 48 forward
    assert train_flops(cfg, [2], -1, 3) == 3 * (3 * 576) + 3 * 48  # everything trained: 3 forwards
    assert train_flops(cfg, [2], 0, 3) == 3 * (3 * 576) + 3 * 48  # frozen embeddings: no matmuls there
    assert train_flops(cfg, [2], 2, 3) == 2 * 576 + 3 * 576 + 3 * 48  # 2 frozen layers: forward only
    assert train_flops(cfg, [2, 2], 3, 3) == 2 * (3 * 576 + 3 * 48)  # windows add up


def test_a_bad_model_or_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nothing"), "--section", "tokenizer", "--no-peer"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "nothing" in err, err
    bad = tmp_path / "eng.train"
    bad.write_text("EU B-ORG\nrejects PERSON\n")
    assert main(["--train", str(bad), "--model", "random", "--section", "tokenizer", "--no-peer"]) == 2
    err = capsys.readouterr().err
    assert "eng.train:2" in err and "Traceback" not in err, err
    device = "cuda:99" if torch.cuda.is_available() else "cuda"  # a GPU that is not there
    assert main(["--model", "random", "--device", device, "--section", "step", "--no-peer"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --device {device}") and "Traceback" not in err, err


def test_busy_section_times_each_command_alone_and_beside_a_busy_loop(tmp_path, monkeypatch):
    """The plumbing (the real figures are README's): each command runs once alone, once while a
    CPU-bound process runs, and the row holds both times and their ratio."""
    import argparse
    import subprocess as sp

    from minibert_ner.tools import bench
    seen = []

    def fake_run(argv, **kw):
        busy = any("while True" in " ".join(p.args) for p in burners if p.poll() is None)
        seen.append((argv[2], busy))
        time.sleep(0.2 if busy else 0.1)
    burners = []
    real_popen = sp.Popen
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.setattr(bench.subprocess, "Popen", lambda argv, **kw: burners.append(real_popen(argv, **kw)) or burners[-1])
    ctx = argparse.Namespace(work=tmp_path, paths={"test": SAMPLE / "test.txt"})
    rows = bench.section_busy(ctx)
    assert seen == [("minibert_ner.train", False), ("minibert_ner.train", True),
                    ("minibert_ner.predict", False), ("minibert_ner.predict", True)]
    assert all(p.poll() is not None for p in burners)  # every busy loop was stopped
    assert [round(r.ratio[0]) for r in rows] == [2, 2] and all(r.goal == "A/B ≤ 2" for r in rows)
