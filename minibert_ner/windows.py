"""Sentences -> model inputs: first-piece labels, 64-piece overlapping windows, batches, cloze masks.

Reproduces "Task and Framework" and "Experiment details" of Moon et al.: a word's tag goes on its
FIRST word piece, every other piece gets the tag 'X' (stored as IGNORE_INDEX: never in the loss,
never predicted, never scored); inputs hold at most 64 pieces including [CLS] and [SEP], and longer
sentences are cut into windows overlapping by 8 pieces so that no training data is discarded.
Also the masks of the secondary tasks of "Multi-task Learning": Cloze (CL) and Predictive Cloze (PC).
Leaves out: reading files (data.py), tokenising (tokenizer.py), chunk decoding (scoring.py), the
model and its losses (heads.py, train.py).
"""
from dataclasses import dataclass

import torch

from minibert_ner.scoring import get_chunks

IGNORE_INDEX = -100  # PyTorch's cross_entropy default ignore_index: the paper's 'X' tag


@dataclass
class Window:
    """One model input: [CLS] pieces [SEP]; all lists have the same length T <= max_len."""
    input_ids: list[int]
    labels: list[int]     # label id on first pieces of labelled words, IGNORE_INDEX elsewhere
    word_ids: list[int]   # index of the word in its sentence, -1 for [CLS]/[SEP]
    is_first: list[bool]  # position holds a word's first piece
    scored: list[bool]    # first piece whose prediction in THIS window is the word's prediction
    sentence: int         # index into the sentence list
    lang: int             # language id (lang_to_id[sentence.lang])


def split_windows(piece_ids, word_index, max_len=64, overlap=8):
    """Cut a sentence's pieces into (start, end) spans of at most max_len - 2 pieces each.

    Consecutive spans overlap by exactly `overlap` pieces; the last span is simply shorter (it is
    not right-aligned), and every span adds at least one new piece. Cuts fall on pieces, not words,
    so a word may start in one span and end in the next: the later span then sees its tail pieces
    as 'X'. word_index is only checked against piece_ids. Zero pieces -> no spans.
    """
    if len(piece_ids) != len(word_index):
        raise ValueError(f"{len(piece_ids)} pieces but {len(word_index)} word indices")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if max_len <= overlap + 2:
        # room for [CLS], [SEP], the overlap and at least one new piece per window
        raise ValueError(f"max_len ({max_len}) must exceed overlap + 2 ({overlap + 2})")
    content, n = max_len - 2, len(piece_ids)
    spans, start = [], 0
    while start < n:
        end = min(start + content, n)
        spans.append((start, end))
        if end == n:
            break
        start = end - overlap  # > previous start because content > overlap
    return spans


def _owners(spans, n, overlap):
    """Per piece, the index of the span whose prediction counts for it (the scoring rule)."""
    # The overlap of spans k and k+1 is split in half: its first overlap // 2 pieces belong to k,
    # the rest to k+1 (an odd middle piece goes to k+1). Each piece is thus scored in the window
    # where it sits further from the cut edge, i.e. where it has the most context on both sides.
    owner = [0] * n
    for k in range(1, len(spans)):
        for p in range(spans[k][0] + overlap // 2, n):
            owner[p] = k
    return owner


def _where(sentence):
    return f"{getattr(sentence, 'source', '')}:{getattr(sentence, 'line', 0)}"


def tagged_pieces(piece_ids, word_index, skip_id=None):
    """Per piece: does it carry its word's tag? The paper's rule: the word's first piece. With
    `skip_id` (SentencePiece's bare "▁", --label-piece content), a word whose first piece is that id
    and that has more pieces carries its tag on the second one: "." -> "▁" "." tags ".".
    """
    first = [p == 0 or word_index[p] != word_index[p - 1] for p in range(len(piece_ids))]
    if skip_id is not None:
        for p in range(len(piece_ids) - 1):
            if first[p] and piece_ids[p] == skip_id and word_index[p + 1] == word_index[p]:
                first[p], first[p + 1] = False, True
    return first


@dataclass(frozen=True)
class Windowing:
    """How a sentence is cut into windows: at most max_len positions ([CLS] and [SEP] included)
    overlapping by `overlap` pieces (the paper: 64 and 8). skip_id: a piece a word's tag never sits
    on (train --label-piece content: the bare '▁' of SentencePiece); None is the paper's rule, the
    word's first piece."""
    max_len: int = 64
    overlap: int = 8
    skip_id: int | None = None


def encode_sentences(sentences, tokenizer, label_to_id, lang_to_id, how=Windowing()):
    """Tokenise, label and window every sentence -> list[Window] in sentence order.

    Training labels: a word's label goes on its first piece (see tagged_pieces) in EVERY window
    holding that piece, so no label is lost. Prediction (`scored`): a word whose first piece lies in
    the overlap of two windows is scored in the window where it is further from the edge (the
    overlap is split in half), so it is predicted with the most context. A sentence without words
    gets no window; a sentence with `tags == []` is unlabeled and gets IGNORE_INDEX everywhere.
    """
    words = [s.words for s in sentences]
    if hasattr(tokenizer, "encode_batch_words"):
        encoded = tokenizer.encode_batch_words(words)  # one call into the Rust tokenizer
    else:
        encoded = [tokenizer.encode_words(w) for w in words]
    windows = []
    for i, (sentence, (piece_ids, word_index)) in enumerate(zip(sentences, encoded)):
        n_words = len(sentence.words)
        if sentence.tags and len(sentence.tags) != n_words:
            raise ValueError(f"{_where(sentence)}: {n_words} words but {len(sentence.tags)} tags")
        # every word must own >= 1 piece, in order, or its label would silently vanish
        if sorted(set(word_index)) != list(range(n_words)) or word_index != sorted(word_index):
            raise ValueError(f"{_where(sentence)}: tokenizer did not give every word >= 1 piece")
        label_ids = []
        for tag in sentence.tags:
            if tag not in label_to_id:
                raise ValueError(f"{_where(sentence)}: unknown tag {tag!r}")
            label_ids.append(label_to_id[tag])
        if sentence.lang not in lang_to_id:
            raise ValueError(f"{_where(sentence)}: unknown language {sentence.lang!r}")
        spans = split_windows(piece_ids, word_index, how.max_len, how.overlap)
        owner = _owners(spans, len(piece_ids), how.overlap)
        first = tagged_pieces(piece_ids, word_index, how.skip_id)
        for k, (start, end) in enumerate(spans):
            pieces = range(start, end)
            labels = [label_ids[word_index[p]] if first[p] and label_ids else IGNORE_INDEX
                      for p in pieces]
            windows.append(Window(
                input_ids=[tokenizer.cls_token_id] + piece_ids[start:end] + [tokenizer.sep_token_id],
                labels=[IGNORE_INDEX] + labels + [IGNORE_INDEX],
                word_ids=[-1] + word_index[start:end] + [-1],
                is_first=[False] + first[start:end] + [False],
                scored=[False] + [first[p] and owner[p] == k for p in pieces] + [False],
                sentence=i, lang=lang_to_id[sentence.lang]))
    return windows


def merge_predictions(windows, predictions, sentences):
    """Per window label ids (or any value) per position (a list, or a padded row of length >= T) -> per word.

    Returns one label id per word for every sentence, read at the `scored` positions; raises if a
    word got no prediction or two (which would mean the windows and sentences do not match).
    """
    merged = [[None] * len(s.words) for s in sentences]
    for window, row in zip(windows, predictions, strict=True):
        row = row.tolist() if hasattr(row, "tolist") else list(row)
        if len(row) < len(window.input_ids):
            raise ValueError(f"prediction row of {len(row)} for a window of {len(window.input_ids)}")
        for t, is_scored in enumerate(window.scored):
            if is_scored:
                words = merged[window.sentence]
                if words[window.word_ids[t]] is not None:
                    raise ValueError(f"sentence {window.sentence} word {window.word_ids[t]} "
                                     "is scored in two windows")
                words[window.word_ids[t]] = row[t]
    for i, words in enumerate(merged):
        if None in words:
            raise ValueError(f"sentence {i} word {words.index(None)} got no prediction")
    return merged


@dataclass
class Batch:
    """Windows padded to the longest one in the batch (dynamic padding)."""
    input_ids: torch.Tensor       # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long, 1 real piece, 0 padding
    labels: torch.Tensor          # (B, T) long, IGNORE_INDEX on X pieces, specials and padding
    word_ids: torch.Tensor        # (B, T) long, -1 on specials and padding
    is_first: torch.Tensor        # (B, T) bool
    lang_ids: torch.Tensor        # (B,) long
    index: list[int]              # position of each window in the dataset

    def to(self, device):
        """A copy on `device` (non_blocking: overlaps the copy with compute from pinned memory)."""
        tensors = [getattr(self, name).to(device, non_blocking=True) for name in
                   ("input_ids", "attention_mask", "labels", "word_ids", "is_first", "lang_ids")]
        return Batch(*tensors, index=list(self.index))


def collate(windows, pad_id, index=None):
    """Stack windows into a Batch padded to the longest window; index defaults to 0..B-1."""
    B, T = len(windows), max(len(w.input_ids) for w in windows)

    def pad(rows, value, dtype):
        out = torch.full((B, T), value, dtype=dtype)  # (B, T)
        for b, row in enumerate(rows):
            out[b, :len(row)] = torch.tensor(row, dtype=dtype)
        return out

    return Batch(
        input_ids=pad([w.input_ids for w in windows], pad_id, torch.long),
        attention_mask=pad([[1] * len(w.input_ids) for w in windows], 0, torch.long),
        labels=pad([w.labels for w in windows], IGNORE_INDEX, torch.long),
        word_ids=pad([w.word_ids for w in windows], -1, torch.long),
        is_first=pad([w.is_first for w in windows], False, torch.bool),
        lang_ids=torch.tensor([w.lang for w in windows], dtype=torch.long),  # (B,)
        index=list(range(B)) if index is None else list(index))


def batch_indices(lengths, batch_size, shuffle=True, bucket=True, generator=None,
                  chunk_batches=50):
    """One epoch of batches of window indices; every index appears exactly once.

    Multilingual training mixes languages by shuffling all windows of all languages together.
    bucket=True then sorts each chunk of `chunk_batches` batches by length before cutting it, so a
    batch holds windows of similar length (little padding), and finally shuffles the batch order.
    shuffle=False keeps the original order (evaluation), sorted by length overall if bucket=True.
    `generator` (a seeded torch.Generator) makes the order reproducible; each call advances it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    if shuffle:
        order = torch.randperm(n, generator=generator).tolist()
    else:
        order = list(range(n))
    if bucket:
        # chunk size is a multiple of batch_size, so only the very last batch can be short
        chunk = chunk_batches * batch_size if shuffle else max(n, 1)
        order = [i for c in range(0, n, chunk)
                 for i in sorted(order[c:c + chunk], key=lambda i: lengths[i])]  # stable sort
    batches = [order[b:b + batch_size] for b in range(0, n, batch_size)]
    if shuffle:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


@dataclass(frozen=True)
class MaskVocab:
    """What masking needs of a vocabulary: the pieces never masked, the [MASK] id, the vocabulary size
    (random replacements are drawn from it)."""
    special_ids: tuple
    mask_id: int
    size: int

    @classmethod
    def of(cls, tok):
        return cls((tok.cls_token_id, tok.sep_token_id, tok.pad_token_id), tok.mask_token_id, len(tok))


def cloze_mask(input_ids, attention_mask, vocab, p=0.15, generator=None):
    """The CL task's random masking m_p -> (masked_input_ids, targets), both (B, T).

    Each real, non-special piece is chosen with probability p; targets hold the original id there
    and IGNORE_INDEX elsewhere. Chosen pieces follow BERT's 80/10/10 rule (80% [MASK], 10% a
    random id, 10% unchanged): the paper asks for the CL task "as is used in the original BERT
    training objective", and never showing [MASK] alone keeps the input close to what the NER
    task sees (it never contains [MASK]). Every row with an eligible piece gets at least one
    target (else it would contribute nothing), which slightly raises the rate on very short rows.
    `generator` must live on input_ids' device.
    """
    device = input_ids.device
    specials = torch.tensor(sorted(set(vocab.special_ids)), dtype=input_ids.dtype, device=device)
    eligible = attention_mask.bool() & ~torch.isin(input_ids, specials)  # (B, T)
    chosen = (torch.rand(input_ids.shape, generator=generator, device=device) < p) & eligible
    # rows with eligible pieces but no choice: pick one eligible piece uniformly at random
    empty = eligible.any(dim=1) & ~chosen.any(dim=1)  # (B,)
    score = torch.rand(input_ids.shape, generator=generator, device=device).masked_fill(~eligible, -1)
    forced = torch.zeros_like(chosen).scatter_(1, score.argmax(dim=1, keepdim=True), True)
    chosen |= forced & empty[:, None]
    targets = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    # one draw decides the fate of each chosen piece: [0, .8) mask, [.8, .9) random, [.9, 1) keep
    fate = torch.rand(input_ids.shape, generator=generator, device=device)
    random_ids = torch.randint(vocab.size, input_ids.shape, generator=generator, device=device,
                               dtype=input_ids.dtype)
    masked = input_ids.clone()
    masked[chosen & (fate < 0.8)] = vocab.mask_id
    replace = chosen & (fate >= 0.8) & (fate < 0.9)
    masked[replace] = random_ids[replace]
    return masked, targets


def predictive_cloze_mask(input_ids, word_ids, is_first, predicted_label_ids, id_to_label,
                          mask_id):
    """The PC task's masking m(x, h(x)): mask every piece of every word in a predicted entity.

    All inputs are (B, T) tensors; predicted_label_ids are the NER head's argmax, read only at
    first pieces. A row's words are its distinct word_ids in position order; a word whose first
    piece lies in another window (a tail cut by the window edge) counts as 'O'. Entity chunks come
    from scoring.get_chunks (conlleval rules, IOB1 or IOB2), and all their pieces, first and
    continuation, become [MASK] always: the paper masks "the input wordpieces corresponding to the
    spans of predicted entities", and a piece left visible (BERT's 10% unchanged) or replaced would
    let the model copy or dodge the very entity it should recover from context. Rows without a
    predicted entity get no target, so the loss must average over targets (and skip an empty batch).
    """
    mask = torch.zeros_like(is_first)  # (B, T) bool
    words_per_row, firsts = word_ids.tolist(), is_first.tolist()
    predicted = predicted_label_ids.tolist()
    for b in range(len(words_per_row)):
        row_words = list(dict.fromkeys(w for w in words_per_row[b] if w >= 0))  # distinct, in order
        tag_of = {w: id_to_label[y] for w, y, f in zip(words_per_row[b], predicted[b], firsts[b]) if f}
        tags = [tag_of.get(w, "O") for w in row_words]
        entity_words = [row_words[j] for _, start, end in get_chunks(tags) for j in range(start, end)]
        if entity_words:
            mask[b] = torch.isin(word_ids[b], torch.tensor(entity_words, device=word_ids.device))
    return input_ids.masked_fill(mask, mask_id), input_ids.masked_fill(~mask, IGNORE_INDEX)
