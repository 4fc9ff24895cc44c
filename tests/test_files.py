"""files.py: every file the library writes appears whole or not at all."""
import json
import os

import pytest

from minibert_ner.files import file_fingerprint, write_json, write_text, written_aside


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"f1": 0.5})
    with pytest.raises(RuntimeError):
        with written_aside(path) as tmp:
            tmp.write_text('{"f1": 0.9', encoding="utf-8")  # half a JSON object ...
            raise RuntimeError("killed")                      # ... and the process dies
    assert json.loads(path.read_text(encoding="utf-8")) == {"f1": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_the_new_content_replaces_the_old_in_one_step(tmp_path):
    path = tmp_path / "log.txt"
    write_text(path, "old\n")
    with written_aside(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".")  # beside it (same file system), hidden
        assert str(os.getpid()) in tmp.name  # one per process: two writers never share a temporary file
        tmp.write_text("new\n", encoding="utf-8")
        assert path.read_text(encoding="utf-8") == "old\n"  # a reader sees the old file until the rename
    assert path.read_text(encoding="utf-8") == "new\n"


def test_json_is_utf8_readable_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"lang": "ru", "word": "Москва"})
    raw = path.read_bytes()
    assert "Москва".encode("utf-8") in raw and raw.endswith(b"\n")  # not \u escapes
    assert json.loads(raw) == {"lang": "ru", "word": "Москва"}


def test_the_fingerprint_follows_the_content_not_the_name(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"EU I-ORG\n")
    b.write_bytes(b"EU I-ORG\n")
    assert file_fingerprint(a) == file_fingerprint(b) == {"bytes": 9, "sha256": file_fingerprint(a)["sha256"]}
    b.write_bytes(b"EU I-LOC\n")  # one tag changed, same size
    assert file_fingerprint(b)["bytes"] == 9 and file_fingerprint(b) != file_fingerprint(a)
