"""A run's folder survives being killed anywhere, and is never reused by mistake.

The fault-injection test kills a small run before every single file operation it performs (each
open for writing, rename, delete, mkdir, torch.save, safetensors write), resumes it with the same
command + --resume (killing the first resume at the same point again), and checks that the
finished folder equals an uninterrupted run's: weights bit for bit, log.jsonl record for record.
A "kill" raises `Killed`, a BaseException, so no `except Exception` in the library can catch it;
a write killed just after it opened its file leaves that file empty (a torn write). One test
does it with a real SIGKILL in a subprocess.
"""
import builtins
import io
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import minibert_ner.weights as weights_module
from minibert_ner import runs
from minibert_ner.runs import RunError, read_log
from minibert_ner.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def config(out, **kw):
    """16 English sentences, 2 steps per epoch, 2 epochs, a 1-layer BERT: a run takes ~0.3 s."""
    base = TrainConfig(train=[("en", str(SAMPLE / "en/train.txt"))], dev=[("en", str(SAMPLE / "en/dev.txt"))],
                       test=[("en", str(SAMPLE / "en/test.txt"))], max_sentences=16, epochs=2, lr=1e-3,
                       batch_size=8, out=str(out), tiny=TINY, quiet=True)
    return replace(base, **kw)


class Killed(BaseException):
    """The process dies here, as under SIGKILL: nothing after this point runs."""


def _writes(args, kwargs):
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
    return any(c in mode for c in "wax+")


@contextmanager
def killed_at(point, within):
    """Count every file operation under the folder `within`; raise Killed instead of performing
    the `point`-th (1-based). Yields the list of operations seen (so point=None just counts them).
    (shutil.rmtree deletes by bare file name relative to an open folder: those count too.)"""
    seen = []

    def tear_file(real, args, kwargs):  # the file is created (empty), then the process dies
        real(*args, **kwargs).close()

    def tear_half(real, args, kwargs):  # the writer ran, but only half its bytes reached the disk
        real(*args, **kwargs)
        path = Path(args[1])  # torch.save(obj, path), save_file(tensors, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    targets = [(builtins, "open", tear_file), (io, "open", tear_file), (os, "replace", None),
               (os, "rename", None), (os, "unlink", None), (os, "remove", None), (os, "rmdir", None),
               (os, "mkdir", None), (torch, "save", tear_half), (weights_module, "save_file", tear_half)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]

    def wrap(owner, name, tear):
        real = getattr(owner, name)

        def operation(*args, **kwargs):
            path = str(args[1] if name in ("save", "save_file") else args[0])
            if (name == "open" and not _writes(args, kwargs)) or (os.path.isabs(path) and within not in path):
                return real(*args, **kwargs)  # a read, or torch's own cache folders: not the run's
            seen.append(f"{name} {path}")
            if len(seen) == point:
                if tear is not None:
                    tear(real, args, kwargs)
                raise Killed(seen[-1])
            return real(*args, **kwargs)
        return operation

    try:
        for owner, name, tear in targets:
            setattr(owner, name, wrap(owner, name, tear))
        yield seen
    finally:
        for owner, name, real in originals:
            setattr(owner, name, real)


def folder_contents(out):
    """Every file of a finished run, comparable across runs: bytes, except timings and pickles."""
    out, found = Path(out), {}
    for path in sorted(out.rglob("*")):
        if path.is_dir():
            continue
        name = str(path.relative_to(out))
        if path.name == "log.jsonl":
            found[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(out)]
        elif path.name == "trainer_state.pt":  # the same state, compared tensor by tensor
            state = torch.load(path, weights_only=True)
            state["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in state["history"]]
            found[name] = state
        elif path.name != "dev_f1.svg":  # the plot is drawn from the log
            found[name] = path.read_bytes()
    return found


def assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_a_run_killed_before_any_file_operation_resumes_to_the_same_result(tmp_path):
    with killed_at(None, str(tmp_path)) as operations:
        train(config(tmp_path / "whole"))
    expected = folder_contents(tmp_path / "whole")
    assert {"best/model.safetensors", "last/trainer_state.pt", "log.jsonl", "results.json"} <= set(expected)
    assert [r["epoch"] for r in read_log(tmp_path / "whole")] == [1, 2]
    kinds = {op.split()[0] for op in operations}
    assert {"open", "replace", "mkdir", "unlink", "rmdir", "save", "save_file"} <= kinds, kinds
    for point in range(1, len(operations) + 1):
        out = tmp_path / f"killed-{point}"
        with pytest.raises(Killed), killed_at(point, str(tmp_path)):
            train(config(out))
        try:  # killed again at the same point of the resumed run, when it gets that far
            with killed_at(point, str(tmp_path)):
                train(config(out, resume=True))
        except Killed:
            pass
        train(config(out, resume=True))
        assert_same(folder_contents(out), expected, f"killed before {operations[point - 1]}")
        leftovers = [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old"))]
        assert not leftovers, (operations[point - 1], leftovers)


KILLER = """
import os, signal, sys
import minibert_ner.runs as runs
real, count = runs.os.replace, [0]
def replace(a, b):  # SIGKILL between the two renames of the second swap of last/
    if str(b).endswith("last.old"):
        count[0] += 1
        if count[0] == 2:
            real(a, b)
            os.kill(os.getpid(), signal.SIGKILL)
    return real(a, b)
runs.os.replace = replace
import minibert_ner.train
sys.exit(minibert_ner.train.main(sys.argv[1:]))
"""


def test_a_real_sigkill_between_the_two_renames_is_recovered(tmp_path):
    argv = ["--train", f"en={SAMPLE / 'en/train.txt'}", "--dev", f"en={SAMPLE / 'en/dev.txt'}",
            "--max-sentences", "16", "--batch-size", "8", "--epochs", "3", "--lr", "1e-3"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = lambda out, *extra, code=None: subprocess.run([sys.executable, "-c", code or "import minibert_ner.train, sys; "
                                                         "sys.exit(minibert_ner.train.main(sys.argv[1:]))",
                                                         *argv, "--out", str(out), *extra],
                                                        env=env, capture_output=True, text=True, timeout=300)
    killed = run(tmp_path / "k", code=KILLER)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "k/last.old").is_dir() and not (tmp_path / "k/last").exists()  # mid-swap
    refused = run(tmp_path / "k")
    assert refused.returncode == 2 and "already holds a run" in refused.stderr and "Traceback" not in refused.stderr
    resumed = run(tmp_path / "k", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "put back" in resumed.stderr and "last.old" in resumed.stderr
    whole = run(tmp_path / "w")
    assert whole.returncode == 0, whole.stderr[-2000:]
    a, b = folder_contents(tmp_path / "k"), folder_contents(tmp_path / "w")
    assert_same(a, b)


def test_resume_before_the_first_checkpoint_starts_over_and_says_so(tmp_path, capsys):
    with pytest.raises(Killed), killed_at(3, str(tmp_path)):  # dies early in the first epoch's checkpoint
        train(config(tmp_path / "r"))
    train(replace(config(tmp_path / "r", resume=True), quiet=False))
    assert "no checkpoint yet" in capsys.readouterr().err
    assert [r["epoch"] for r in read_log(tmp_path / "r")] == [1, 2]


def test_resume_with_other_settings_is_refused_naming_each_difference(tmp_path):
    cfg = config(tmp_path / "r", epochs=3, stop_after=1)
    train(cfg)
    with pytest.raises(RunError) as error:
        train(replace(cfg, resume=True, max_sentences=24, lr=2e-3))
    message = str(error.value)
    assert "max_sentences: saved 16, now 24" in message and "lr: saved 0.001, now 0.002" in message
    other = tmp_path / "eng.train"
    other.write_text((SAMPLE / "en/train.txt").read_text() + "\nExtra O\n")
    with pytest.raises(RunError, match=r"data file .*eng.train: saved absent, now \d+ bytes"):
        train(replace(cfg, resume=True, train=[("en", str(other))]))
    # run-control settings may change freely; a deliberate change of epochs is allowed by name
    with pytest.raises(RunError, match="epochs: saved 3, now 4"):
        train(replace(cfg, resume=True, epochs=4, stop_after=0))
    train(replace(cfg, resume=True, epochs=4, stop_after=0, allow_change=["epochs"], eval_batch_size=7))
    history = read_log(cfg.out)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert all(r["lr"] > 0 for r in history)  # the schedule was stretched, not left at 0


def test_a_new_run_never_reuses_a_folder_silently(tmp_path):
    cfg = config(tmp_path / "r", epochs=1)
    train(cfg)
    with pytest.raises(RunError, match="already holds a run: pass --resume .* --overwrite"):
        train(cfg)
    before = read_log(cfg.out)
    train(replace(cfg, overwrite=True, seed=2))  # other data would build another vocabulary: rebuilt
    after = read_log(cfg.out)
    assert len(after) == 1 and after[0] != before[0]
    assert runs.holds_a_run(cfg.out) and not runs.holds_a_run(tmp_path / "nothing-here")


def test_a_micro_batch_without_labelled_pieces_adds_zero_loss_not_nan(tmp_path):
    """The issue's reproduction: "Anna sagt" + a word of 99 dots. The dots are 99 pieces of ONE word,
    so the sentence's second window holds no first piece at all, hence no label. With batches of 2
    in 2 micro-batches, half the micro-batches are such windows; each used to make the loss NaN."""
    data = tmp_path / "de.txt"
    data.write_text(("Anna I-PER\nsagt O\n" + "." * 99 + " O\n\n") * 16)
    cfg = replace(config(tmp_path / "r", epochs=1), train=[("de", str(data))], dev=[("de", str(data))], test=[],
                  batch_size=2, grad_accum=2)
    train(cfg)
    (record,) = read_log(cfg.out)
    assert record["skipped_steps"] == 0 and record["train_loss"] is not None and record["train_loss"] > 0


def test_an_epoch_without_a_finite_step_is_logged_as_such(tmp_path, monkeypatch):
    import minibert_ner.train as train_module
    calls = {"n": 0}
    real = train_module.ner_loss

    def poisoned(logits, labels, **kw):  # epoch 2 (steps 3-4) is all NaN, epoch 3 recovers
        calls["n"] += 1
        return real(logits, labels, **kw) * (float("nan") if calls["n"] in (3, 4) else 1.0)
    monkeypatch.setattr(train_module, "ner_loss", poisoned)
    train(config(tmp_path / "r", epochs=3))
    history = read_log(tmp_path / "r")
    assert [r["skipped_steps"] for r in history] == [0, 2, 0]
    assert history[1]["train_loss"] is None and history[0]["train_loss"] > 0


def test_divergence_before_any_checkpoint_names_no_missing_folder(tmp_path, monkeypatch):
    import minibert_ner.train as train_module
    monkeypatch.setattr(train_module, "ner_loss", lambda *a, **kw: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="No checkpoint was written yet"):
        train(replace(config(tmp_path / "r", epochs=10), max_sentences=200))


def test_command_line_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    from minibert_ner.train import main
    bad = tmp_path / "bad.txt"
    bad.write_text("Anna I-PER\nMerkel PERSON\n")
    cases = {
        "no run folder: pass --out": ["--train", f"en={SAMPLE / 'en/train.txt'}"],
        "--dev file .*nope.txt does not exist": ["--train", f"en={SAMPLE / 'en/train.txt'}", "--dev", "en=nope.txt",
                                                 "--out", str(tmp_path / "a")],
        "--batch-size 6 must be a positive multiple of --grad-accum 4": [
            "--train", f"en={SAMPLE / 'en/train.txt'}", "--batch-size", "6", "--grad-accum", "4", "--out",
            str(tmp_path / "b")],
        r"bad\.txt:2: bad tag 'PERSON'": ["--train", f"en={bad}", "--out", str(tmp_path / "c")],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, expected
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("error: "), err
        assert __import__("re").search(expected, err), (expected, err)


def test_a_minutes_budget_stops_at_an_epochs_end_and_resumes(tmp_path):
    cfg = config(tmp_path / "r", epochs=3, minutes=1e-6)  # no second epoch fits
    assert train(cfg)["stopped"] and [r["epoch"] for r in read_log(cfg.out)] == [1]
    train(replace(cfg, minutes=0, resume=True))
    assert [r["epoch"] for r in read_log(cfg.out)] == [1, 2, 3]


def test_without_dev_data_the_last_epoch_is_kept_and_says_so(tmp_path, capsys):
    from minibert_ner.train import report_seeds
    result = train(replace(config(tmp_path / "r", epochs=2), dev=[], quiet=False))
    err = capsys.readouterr().err
    assert "no --dev data" in err and "the LAST epoch" in err
    assert result["best_epoch"] == 2 and result["best_dev_f1"] is None
    assert "best dev F1" not in report_seeds([result]) and "test F1 en" in report_seeds([result])
