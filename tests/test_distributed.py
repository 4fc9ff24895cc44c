"""The training loop under torchrun: 2 CPU processes on gloo give the single process's results."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minibert_ner.runs import read_log
from minibert_ner.weights import read_tensors

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
# Dropout 0: then one process and two see exactly the same arithmetic, up to summation order.
ARGS = ["--train", f"en={SAMPLE / 'en/train.txt'}", f"de={SAMPLE / 'de/train.txt'}",
        "--dev", f"en={SAMPLE / 'en/dev.txt'}", f"de={SAMPLE / 'de/dev.txt'}",
        "--max-sentences", "48", "--batch-size", "8", "--lr", "3e-3", "--warmup", "0", "--dropout", "0", "--quiet",
        "--precision", "fp32"]  # not auto (bf16 where the CPU has it): the runs are compared to 2e-4

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")


def run(out, *extra, processes=1):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    cmd = launcher + ["-m", "minibert_ner.train", *ARGS, "--out", str(out), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(out):
    return read_tensors(Path(out) / "last" / "model.safetensors")


log = read_log


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    run(tmp_path / "one", "--epochs", "2")
    two = run(tmp_path / "two", "--epochs", "2", processes=2)
    # 24 AdamW steps at lr 3e-3: float summation order differs between 1 and 2 processes, and Adam
    # magnifies the ~1e-7 gradient differences of near-zero gradients into ~1e-5 weight differences
    d = max_diff(weights(tmp_path / "one"), weights(tmp_path / "two"))
    assert d < 2e-4, f"max abs weight difference {d:.2e}"
    # every dev word scored exactly once: the same F1 to the last digit as the single process
    one_log, two_log = log(tmp_path / "one"), log(tmp_path / "two")
    assert one_log[-1]["dev"]["en"]["f1"] > 0, "the model should have learnt something by epoch 2"
    for a, b in zip(one_log, two_log):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        for lang in a["dev"]:
            assert a["dev"][lang] == pytest.approx(b["dev"][lang], abs=1e-9), (a["epoch"], lang)
    # same report format, printed once (rank 0 only)
    assert two.stdout.count("seed 1:") == 1 and "± 0.00" not in two.stdout


@pytest.mark.slow
def test_frozen_layers_under_ddp(tmp_path):
    """--frz 1 with 2 processes: no complaint about parameters without gradients, frozen tensors unchanged."""
    run(tmp_path / "frz", "--epochs", "1", "--frz", "1", processes=2)
    run(tmp_path / "init", "--epochs", "1", "--frz", "1", "--lr", "0")  # lr 0: the initial weights
    trained, init = weights(tmp_path / "frz"), weights(tmp_path / "init")
    frozen = [k for k in init if k.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    assert frozen and all(torch.equal(trained[k], init[k]) for k in frozen)
    assert not torch.equal(trained["classifier.weight"], init["classifier.weight"])
    assert not torch.equal(trained["bert.encoder.layer.1.output.dense.weight"],
                           init["bert.encoder.layer.1.output.dense.weight"])


@pytest.mark.slow
def test_resume_with_a_different_number_of_processes(tmp_path):
    run(tmp_path / "full", "--epochs", "2")
    run(tmp_path / "mixed", "--epochs", "2", "--stop-after", "1", processes=2)
    run(tmp_path / "mixed", "--epochs", "2", "--resume")
    assert max_diff(weights(tmp_path / "full"), weights(tmp_path / "mixed")) < 2e-4
    assert [r["epoch"] for r in log(tmp_path / "mixed")] == [1, 2]
