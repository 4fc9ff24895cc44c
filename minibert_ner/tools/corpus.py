"""The pretraining corpus: words of many languages -> one flat array of piece ids per language, windows
cut from it on the fly, languages drawn with exponentially smoothed weights.

mBERT learnt from the Wikipedias of 104 languages, one shared WordPiece vocabulary and nothing telling
it which language a text is in; since Wikipedia sizes differ by orders of magnitude, it drew languages
with probability p_l proportional to n_l^0.7 (its README: "exponentially smoothed weighting"), which
samples small languages more often than their share and large ones less. Here the text is the words
of the NER corpora's TRAINING splits (every language of ../shared/data, or the bundled sample), plus
any raw text the user adds; their dev and test files are never read, so the NER experiments still
select and score on text the encoder has not seen.

Memory: a language's sentences are laid end to end as piece ids, [SEP] after each, in one int32 array
(4M pieces = 16 MB); a window is a slice of it taken when a batch is drawn, never stored.
Left out: document boundaries (WikiANN sentences come without documents), deduplication.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import CONLL_FILES, SAMPLE_DIR, DataError, read_conll, read_text, shared_data_dir
from ..windows import IGNORE_INDEX, Batch

SAMPLE = SAMPLE_DIR  # the bundled demo data
HELDOUT_SENTENCES = 200  # per language, at most (and at most a tenth): the held-out slice


def default_files(root):
    """The training splits under `root` as [(lang, path)]: WikiANN's train-LANG.tsv, the CoNLL training
    files, and LANG/train.txt (the bundled sample's layout). Never a dev or test file."""
    root = Path(root)
    files = [(lang, root / train) for lang, (train, _dev, _test) in CONLL_FILES.items() if (root / train).is_file()]
    # WikiANN last: every language has it, so the held-out slices (each language's last sentences,
    # see split_heldout) are all WikiANN sentences, comparable across languages
    files += [(p.parent.name, p) for p in sorted(root.glob("wikiann/*/train-*.tsv"))]
    return files + [(p.parent.name, p) for p in sorted(root.glob("*/train.txt"))]


def training_files(data=""):
    """The labelled files of `data` ("" = ../shared/data, or the bundled sample when it is absent;
    "none" = no file, raw --text only) whose words make the corpus."""
    if data == "none":
        return []
    root = Path(data) if data else shared_data_dir()
    if not data and not root.is_dir():
        root = SAMPLE
    files = default_files(root)
    if not files:
        raise DataError(f"{root}: no training files here (wikiann/LANG/train-LANG.tsv, the CoNLL training "
                        f"files or LANG/train.txt); pass another --data folder, or --data none --text LANG=FILE")
    return files


def read_sentences(files, texts=(), langs=""):
    """{lang: [words of each sentence]} from labelled files (words only) and raw text, one sentence a
    line; `langs` ("en,de"; "" = all) keeps only those languages."""
    keep = lambda lang: not langs or lang in langs.split(",")
    sentences = {}
    for lang, path in files:
        if keep(lang):
            sentences.setdefault(lang, []).extend(s.words for s in read_conll(path, lang))
    for lang, path in texts:
        if keep(lang):
            text = read_text(path, lang)
            if not text:
                raise DataError(f"{path}: no text in this --text file (expected one sentence per line)")
            sentences.setdefault(lang, []).extend(s.words for s in text)
    if not sentences:
        raise DataError(f"no text to pretrain on (--langs {langs or 'all'}; languages of the files: "
                        f"{', '.join(sorted({l for l, _ in [*files, *texts]})) or 'none'}); add --text LANG=FILE")
    return dict(sorted(sentences.items()))


def split_heldout(sentences):
    """(train, heldout): each language's last sentences, up to HELDOUT_SENTENCES and a tenth, held out
    to measure the masked-LM on text it never trained on."""
    cut = {lang: len(s) - min(HELDOUT_SENTENCES, len(s) // 10) for lang, s in sentences.items()}
    return ({lang: s[:cut[lang]] for lang, s in sentences.items()},
            {lang: s[cut[lang]:] for lang, s in sentences.items()})


@dataclass
class Stream:
    """One language's text as pieces: sentence after sentence, each followed by [SEP]."""
    ids: torch.Tensor     # (n_pieces,) int32
    starts: torch.Tensor  # (n_sentences,) int64, where each sentence's first piece sits in `ids`
    words: int


def encode_stream(sentences, tok, chunk=20000):
    """Word lists -> a Stream, tokenising `chunk` sentences at a time (no list of every piece id)."""
    parts, starts, offset = [], [], 0
    for i in range(0, len(sentences), chunk):
        flat = []
        for ids, _ in tok.encode_batch_words(sentences[i:i + chunk]):
            starts.append(offset + len(flat))
            flat.extend(ids)
            flat.append(tok.sep_token_id)
        parts.append(np.asarray(flat, dtype=np.int32))
        offset += len(flat)
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return Stream(torch.from_numpy(ids), torch.tensor(starts, dtype=torch.int64),
                  sum(len(words) for words in sentences))


def smoothed_weights(sizes, alpha=0.7):
    """p_l proportional to n_l^alpha: alpha 1 keeps the corpus's proportions, 0 makes languages equal."""
    n = torch.tensor([float(s) for s in sizes], dtype=torch.float64)
    p = n ** alpha
    return p / p.sum()


def window_batch(rows, langs, pad_id):
    """Rows of piece ids (1-D tensors) -> a windows.Batch padded to the longest; no labels (raw text)."""
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)  # (B, T)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = row
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()  # (B, T) 1 real, 0 padding
    return Batch(input_ids=ids, attention_mask=mask, labels=torch.full_like(ids, IGNORE_INDEX),
                 word_ids=torch.full_like(ids, -1), is_first=torch.zeros_like(ids, dtype=torch.bool),
                 lang_ids=torch.tensor(langs), index=list(range(len(rows))))


def framed(ids, tok):
    """[CLS] pieces [SEP]: what the encoder sees, as in fine-tuning."""
    return torch.cat([ids.new_tensor([tok.cls_token_id]), ids, ids.new_tensor([tok.sep_token_id])])


def sample_batch(streams, weights, batch_size, max_len, tok, generator):
    """A batch of training windows: each draws a language (p_l), then one of its sentences uniformly,
    and reads max_len - 2 pieces from that sentence's start on (running into the next sentences)."""
    langs = torch.multinomial(weights, batch_size, replacement=True, generator=generator).tolist()
    where = torch.rand(batch_size, generator=generator, dtype=torch.float64).tolist()
    rows = []
    for lang, u in zip(langs, where):
        s = streams[lang]
        start = int(s.starts[int(u * len(s.starts))])
        rows.append(framed(s.ids[start:start + max_len - 2], tok))
    return window_batch(rows, langs, tok.pad_token_id)


def heldout_batch(stream, max_len, tok):
    """The held-out stream cut into consecutive windows: the same windows at every evaluation."""
    step = max_len - 2
    rows = [framed(stream.ids[a:a + step], tok) for a in range(0, len(stream.ids), step)]
    return window_batch(rows, [0] * len(rows), tok.pad_token_id)


def describe(streams, heldout, weights, tok):
    """A table of the corpus: per language sentences, words, pieces, pieces per word (fertility),
    [UNK]s per 100 words, the sampling weight p_l, and the held-out slice."""
    lines = [f"{'lang':<5}{'sentences':>10}{'words':>11}{'pieces':>11}{'pieces/word':>12}{'UNK/100w':>10}"
             f"{'share':>8}{'p_l':>7}{'held-out sent.':>15}"]
    total = sum(len(s.ids) for s in streams.values())
    for (lang, s), p in zip(streams.items(), weights.tolist()):
        pieces = len(s.ids) - len(s.starts)  # without the [SEP] after each sentence
        unk = int((s.ids == tok.unk_token_id).sum())
        lines.append(f"{lang:<5}{len(s.starts):>10,}{s.words:>11,}{pieces:>11,}{pieces / max(s.words, 1):>12.2f}"
                     f"{100 * unk / max(s.words, 1):>10.2f}{len(s.ids) / total:>8.3f}{p:>7.3f}"
                     f"{len(heldout[lang].starts):>15,}")
    return "\n".join(lines)

