"""Tests for minibert_ner.tools.datasets: the manifest agrees with the shared data's counts, download
verifies and writes atomically (and explains what to do offline), and the command line's errors are one
line naming the file."""
import hashlib
import io
import json
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from minibert_ner.data import DataError
from minibert_ner.tools import datasets

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_manifest_names_and_agrees_with_stats(shared_data):
    manifest = datasets.load_manifest()
    wikiann = {f"wikiann-{lang}" for lang in ["ar", "de", "en", "es", "fi", "nl", "ru", "sw", "tr", "zh"]}
    assert {"conll2003-en", "conll2002-es", "conll2002-nl", "conll2003-de"} | wikiann == set(manifest)
    stats = json.loads((shared_data / "stats.json").read_text(encoding="utf-8"))
    by_sha = {entry["sha256"]: entry for entry in stats.values()}
    checked = 0
    for name, dataset in manifest.items():
        assert dataset["licence"] and dataset["official"].startswith("https://"), name
        for entry in dataset["files"]:
            assert entry["url"] is None or entry["url"].startswith("https://"), entry
            if entry["sha256"] in by_sha:
                assert entry["sentences"] == by_sha[entry["sha256"]]["sentences"], entry
                checked += 1
    assert checked == 42  # all but the two latin-1 German originals and the absent deu.train
    assert "not publicly downloadable" in manifest["conll2003-de"]["note"]


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_verifies_writes_atomically_and_explains_offline(tmp_path, monkeypatch, capsys):
    payload = b"EU I-ORG\n"
    entry = {"split": "train", "file": "eng.train", "url": "https://example.invalid/eng.train",
             "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    monkeypatch.setattr(datasets, "load_manifest", lambda: {"toy-en": {"files": [entry]}})
    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    assert datasets.download("toy-en", tmp_path) == [tmp_path / "toy-en" / "eng.train"]
    assert (tmp_path / "toy-en" / "eng.train").read_bytes() == payload
    assert "eng.train:" in capsys.readouterr().err  # the progress line

    entry["sha256"] = "0" * 64  # upstream changed: refuse, leave nothing behind
    (tmp_path / "toy-en" / "eng.train").unlink()
    with pytest.raises(DataError, match="is not the expected 0000"):
        datasets.download("toy-en", tmp_path)
    assert list((tmp_path / "toy-en").iterdir()) == []

    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as error:
        datasets.download("toy-en", tmp_path)
    message = str(error.value)
    assert entry["url"] in message and "by hand" in message and str(tmp_path / "toy-en" / "eng.train") in message
    assert entry["sha256"] in message
    with pytest.raises(DataError, match="unknown dataset"):
        datasets.download("nope", tmp_path)


def test_command_line(tmp_path, capsys):
    path = write(tmp_path, "eng.testa", "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n"
                                        "German JJ I-NP I-MISC\n\nPeter NNP I-NP I-PER\n")
    assert datasets.main(["stats", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 2 sentences, 4 tokens, entities: MISC 1, ORG 1, PER 1; scheme IOB1\n"
    assert datasets.main(["list"]) == 0
    assert "wikiann-sw" in capsys.readouterr().out
    assert datasets.main(["stats", str(tmp_path / "none")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert datasets.main(["stats", str(tmp_path)]) == 2  # a folder
    assert capsys.readouterr().err == f"error: {tmp_path}:0: cannot read it (Is a directory); expected a CoNLL or WikiANN file (`python -m minibert_ner.tools.datasets list` shows where to get one)\n"
    utf8 = write(tmp_path, "deu.testa", "für O\n")
    assert datasets.main(["stats", "--encoding", "latin-1", str(utf8)]) == 0
    assert capsys.readouterr().err.startswith(f"warning: {utf8}: read as latin-1, but it is valid UTF-8")
    with pytest.raises(SystemExit):
        datasets.main(["--help"])
    assert "download" in capsys.readouterr().out


@pytest.mark.parametrize("content, options, message", [
    ("Río I-LOC\n".encode("latin-1"), [], r":1: byte 0xed is not valid utf-8; .* --encoding latin-1"),
    (b"EU I-ORG\nrejects\n", [], r":2: 1 column\(s\), expected 2"),
    (b"EU B_ORG\n", [], r":1: bad tag 'B_ORG'"),
    (b"EU I-ORG\n", ["--encoding", "klingon"], r":0: unknown encoding 'klingon'"),
    (None, [], r":0: no such file"),
])
def test_command_line_bad_input_is_one_line_exit_2(tmp_path, content, options, message):
    path = tmp_path / "eng.train"
    if content is not None:
        path.write_bytes(content)
    run = subprocess.run([sys.executable, "-m", "minibert_ner.tools.datasets", "stats", *options, str(path)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and re.match(rf"error: {path}{message}", run.stderr), run.stderr
