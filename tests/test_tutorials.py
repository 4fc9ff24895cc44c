"""Every tutorial runs end to end, so none can rot.

Each chapter is run as a student runs it (`python tutorials/0X_*.py`) in a fresh process on the
CPU, with MINIBERT_TUTORIAL_TINY=1 to shrink what it trains, from an empty working directory that
must still be empty afterwards (tutorials write only to tempfile folders). The chapters' own
`assert` cells are the checks: any that fails makes the script exit non-zero.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


def test_there_are_ten_chapters():
    assert [p.name[:2] for p in CHAPTERS] == [f"{i:02d}" for i in range(1, 11)], [p.name for p in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs(chapter, tmp_path):
    env = dict(os.environ, MINIBERT_TUTORIAL_TINY="1", CUDA_VISIBLE_DEVICES="")  # CPU only
    done = subprocess.run([sys.executable, str(chapter)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # a hang guard, not a budget
    assert done.returncode == 0, f"{chapter.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert list(tmp_path.iterdir()) == [], f"{chapter.name} wrote into its working directory"
