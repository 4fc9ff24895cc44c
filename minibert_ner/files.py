"""Writing a file so that a reader sees its old content or its new content, never half of one.

A run is killed, a disk fills, another process reads a checkpoint while it is being written: every
file the library writes is first written beside its place under a temporary name and then renamed
onto it in one step (`os.replace` is atomic on POSIX and Windows). `written_aside` is that one
pattern; the other functions are the shapes the library writes. Whole folders (a checkpoint) are
swapped in by runs.py on top of it.
"""
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_aside(path):
    """Yields a temporary path beside `path` to write to. When the block ends, the file is renamed
    onto `path`; when it raises, the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden, and one per process
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text):
    with written_aside(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def file_fingerprint(path):
    """{"bytes", "sha256"} of a data file: what --resume compares to notice other data."""
    data = Path(path).read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
