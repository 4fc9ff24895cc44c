"""The public NER corpora: where they come from, download and verify them, count what is in a file.

`python -m minibert_ner.tools.datasets --help`. The manifest (datasets.json beside this file) pins every
file's source, terms, sha256 and counts; `convert` turns OntoNotes 5.0 (ontonotes.py) into the two-column
files train reads. Reading a file is the core's job (minibert_ner/data.py); this tool only fetches and
describes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from ..cli import run_command
from ..data import DataError, detect_scheme, read_conll, starts_chunk
from . import ontonotes


def load_manifest() -> dict:
    """The dataset manifest (minibert_ner/tools/datasets.json): sources, terms, checksums, counts."""
    return json.loads((Path(__file__).parent / "datasets.json").read_text(encoding="utf-8"))


def download(name: str, to: str | Path) -> list[Path]:
    """Fetch every file of dataset `name` into to/name/, verify sha256, write atomically."""
    manifest = load_manifest()
    if name not in manifest:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(manifest)}")
    folder = Path(to) / name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in manifest[name]["files"]:
        target = folder / entry["file"]
        if not entry.get("url"):
            print(f"{name}/{entry['file']}: no public download. {entry['note']}", file=sys.stderr)
            continue
        # Checksums pin the exact bytes the counts in datasets.json (and the tests) were made from.
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == entry["sha256"]:
            print(f"{target}: already there, checksum ok", file=sys.stderr)
        else:
            _fetch(entry, target)
        written.append(target)
    return written


def _fetch(entry: dict, target: Path) -> None:
    """Stream one URL to target.part with a progress line, check the checksum, then rename."""
    how_to = (f"fetch {entry['url']} by hand, save it as {target}, and check that "
              f"`sha256sum {target.name}` prints {entry['sha256']} (re-running this command checks it)")
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(entry["url"], timeout=30) as response, open(partial, "wb") as out:
            digest, done, total = hashlib.sha256(), 0, entry.get("bytes") or 0
            while chunk := response.read(1 << 16):  # 64 KiB at a time: hash while writing
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                percent = f" {100 * done / total:5.1f}%" if total else ""
                # "\r" redraws one progress line; stderr keeps stdout clean for the list of paths.
                print(f"\r{target.name}: {done / 1e6:6.2f} MB{percent}", end="", file=sys.stderr)
            print(file=sys.stderr)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(f"{entry['url']}: cannot download ({err}). Offline? Then {how_to}") from None
    if digest.hexdigest() != entry["sha256"]:
        partial.unlink()
        raise DataError(f"{entry['url']}: sha256 {digest.hexdigest()} is not the expected "
                        f"{entry['sha256']}; the file changed upstream. {how_to}")
    os.replace(partial, target)  # atomic: a reader never sees half a file


def describe(path, lang=None, encoding="utf-8") -> str:
    """One line per file: sentences, tokens, entities per type, tag scheme."""
    sentences = read_conll(path, lang=lang or "xx", encoding=encoding)  # language is irrelevant here
    # One entity per chunk start: the count conlleval (and stats.json) reports.
    entities = Counter(tag[2:] for sentence in sentences
                       for previous, tag in zip(["O"] + sentence.tags, sentence.tags)
                       if starts_chunk(previous, tag))
    per_type = ", ".join(f"{name} {count}" for name, count in sorted(entities.items()))
    tokens = sum(len(sentence.words) for sentence in sentences)
    return (f"{path}: {len(sentences)} sentences, {tokens} tokens, entities: {per_type or 'none'}; "
            f"scheme {detect_scheme(sentences)}")


def main(argv=None) -> int:
    """The command line; returns the exit status: 2 and one line naming the file for bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m minibert_ner.tools.datasets",
        description="Public NER corpora: list where they come from, download and verify them, "
                    "count what is in a file.",
        epilog="examples:\n  python -m minibert_ner.tools.datasets list\n"
               "  python -m minibert_ner.tools.datasets download conll2002-es --to data/raw\n"
               "  python -m minibert_ner.tools.datasets stats data/raw/conll2002-es/esp.train\n"
               "  python -m minibert_ner.tools.datasets convert --from conll2012 conll-2012/v4/data/train/data/english --out on-en.train\n"
               "Most corpora are research-only: read the terms `list` prints before use.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every dataset, its source, terms and files")
    fetch = commands.add_parser("download", help="fetch a dataset and verify its sha256")
    fetch.add_argument("name", help="a name from `list`, e.g. conll2003-en or wikiann-sw")
    fetch.add_argument("--to", default="data/raw", help="folder to put NAME/ in (default data/raw)")
    stats = commands.add_parser("stats", help="sentences, tokens, entities per type, tag scheme")
    stats.add_argument("files", nargs="+")
    stats.add_argument("--encoding", default="utf-8", help="of every FILE (default utf-8); latin-1 "
                       "for the original CoNLL-2002 files")
    ontonotes.add_convert_arguments(commands.add_parser(
        "convert", help="OntoNotes 5.0 CoNLL-2012 *_conll files -> the two-column IOB1 files train reads"))
    args = parser.parse_args(argv)
    if args.command == "convert":
        return ontonotes.convert_command(args)
    return run_command(lambda: _run(args))  # a bad file: one line naming it, exit 2; warnings one line each


def _run(args) -> int:
    if args.command == "list":
        for name, dataset in load_manifest().items():
            print(f"{name}  [{dataset['lang']}, {dataset['scheme']}]  {dataset['official']}")
            print(f"    terms: {dataset['licence']}")
            for entry in dataset["files"]:
                count = f"{entry['sentences']} sentences" if entry.get("sentences") else "-"
                print(f"    {entry['split']:5} {entry['file']:22} {count:18} {entry.get('url') or entry['note']}")
    elif args.command == "download":
        try:
            paths = download(args.name, args.to)
        except OSError as err:  # e.g. a --to folder that cannot be written
            raise DataError(f"{err.filename}: {err.strerror}; choose a folder you can write to") from None
        print("\n".join(map(str, paths)))
    else:
        for path in args.files:
            print(describe(path, encoding=args.encoding))
    return 0


if __name__ == "__main__":
    sys.exit(main())
