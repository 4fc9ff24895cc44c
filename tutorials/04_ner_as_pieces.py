# %% [markdown]
# # 4. NER as word-piece classification
#
# **What you will build:** the bridge between a tagged sentence and what BERT eats: first-piece
# labels and the tag `X`, windows of at most 64 pieces overlapping by 8, the IOB1 and IOB2 tag
# schemes, and span-level F1 exactly as the CoNLL `conlleval` script computes it.
#
# **You need:** chapter 1 (word pieces). No model yet.
#
# **Time:** 20 minutes to read; runs in a couple of seconds.

# %%
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
WORK = tempfile.TemporaryDirectory()  # every file we write goes here; deleted when Python exits
from minibert_ner.data import (Sentence, iob1_to_iob2, iob2_to_iob1, mbert_vocab_path,  # noqa: E402
                               read_conll, shared_data_dir)

from minibert_ner.scoring import get_chunks, score  # noqa: E402
from minibert_ner.tokenizer import WordPieceTokenizer, train_vocab  # noqa: E402
from minibert_ner.windows import IGNORE_INDEX, Windowing, encode_sentences, merge_predictions, split_windows  # noqa: E402

SHARED = shared_data_dir()  # ../shared/data, or $MINIBERT_SHARED_DATA
MBERT = mbert_vocab_path()
SAMPLE = REPO / "data" / "sample"
if MBERT.exists():
    tok = WordPieceTokenizer.from_file(MBERT)
else:
    print(f"NOTE: {MBERT} not found; using a vocab trained on the bundled sample instead")
    words = [w for lang in ("en", "de") for s in read_conll(SAMPLE / lang / "train.txt") for w in s.words]
    tok = WordPieceTokenizer.from_file(train_vocab(words, 600, Path(WORK.name) / "vocab.txt"))

# %% [markdown]
# ## Step 1: one label per word, on its first piece
#
# NER tags words, but BERT sees pieces. The paper follows Devlin et al.: a word's tag goes on its
# *first* piece, and every other piece gets the tag `X`, which is never trained on, never
# predicted, never scored. In code, `X` is `-100`, the index PyTorch's cross-entropy ignores.

# %%
words = ["Kathrin", "Hoffmann", "besichtigte", "Gelsenkirchen", "."]
tags = ["I-PER", "I-PER", "O", "I-LOC", "O"]  # IOB1, the paper's scheme (Step 3)
piece_ids, word_of_piece = tok.encode_words(words)  # no [CLS]/[SEP] yet
pieces = tok.convert_ids_to_tokens(piece_ids)
by_hand = [tags[w] if p == 0 or word_of_piece[p - 1] != w else "X" for p, w in enumerate(word_of_piece)]
for piece, tag in zip(pieces, by_hand):
    print(f"{piece:>12} {tag}")

# %% [markdown]
# The library builds the model's input, a `Window`: `[CLS]`, the pieces, `[SEP]`, with label ids
# (`O` = 0 first in the label list) and `IGNORE_INDEX` on `X`, `[CLS]` and `[SEP]`.

# %%
labels = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
label_to_id = {tag: i for i, tag in enumerate(labels)}
window, = encode_sentences([Sentence(words, tags, "de")], tok, label_to_id, {"de": 0})
print(window.labels)

# %%
expected = [IGNORE_INDEX] + [IGNORE_INDEX if t == "X" else label_to_id[t] for t in by_hand] + [IGNORE_INDEX]
assert window.labels == expected
assert window.input_ids == [tok.cls_token_id] + piece_ids + [tok.sep_token_id]
assert sum(label != IGNORE_INDEX for label in window.labels) == len(words)  # exactly one per word
assert len(pieces) > len(words) and "X" in by_hand  # some words really were split

# %% [markdown]
# ## Step 2: windows of 64 pieces, overlapping by 8
#
# The paper trains on inputs of at most 64 pieces, `[CLS]` and `[SEP]` included, so 62 carry
# text. A longer sentence is cut into windows that share 8 pieces with their neighbour: no word
# is thrown away, and words near a cut are seen with context in at least one window. At
# prediction time a word in the overlap is *scored* in only one window: the half of the
# overlap nearer to a window's centre belongs to that window.

# %%
sample = read_conll(SAMPLE / "de" / "train.txt")
long = max(sample, key=lambda s: len(tok.encode_words(s.words)[0]))  # the sample's longest sentence
n_pieces = len(tok.encode_words(long.words)[0])
spans = split_windows(*tok.encode_words(long.words), max_len=64, overlap=8)
long_labels = {tag: i for i, tag in enumerate(["O", *sorted(set(long.tags) - {"O"})])}
windows = encode_sentences([long], tok, long_labels, {"de": 0}, Windowing(max_len=64, overlap=8))
print(f"{len(long.words)} words, {n_pieces} pieces -> spans {spans}")

# %%
assert n_pieces > 62 and len(windows) == len(spans) >= 2
assert all(len(w.input_ids) <= 64 for w in windows)
assert all(a_end - b_start == 8 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # overlap of 8
assert sum(sum(w.scored) for w in windows) == len(long.words)  # every word scored exactly once
# A perfect model predicts the gold label everywhere; merging its windows must give back the tags.
perfect = [[max(label, 0) for label in w.labels] for w in windows]  # -100 -> 0 where nothing is read
assert merge_predictions(windows, perfect, [long]) == [[long_labels[t] for t in long.tags]]

# %% [markdown]
# ## Step 3: IOB1 and IOB2
#
# Both schemes mark the same entities. IOB2 begins every entity with `B-`. IOB1, which the
# paper uses and CoNLL-2003 ships in, begins entities with `I-` and writes `B-` only when an
# entity directly follows another of the same type, where it is needed to see the border.

# %%
words = ["Bayern", "München", "Bayer", "Leverkusen", "2", ":", "1"]
iob1 = ["I-ORG", "I-ORG", "B-ORG", "I-ORG", "O", "O", "O"]
iob2 = iob1_to_iob2(iob1)
print(list(zip(words, iob1, iob2)))

# %%
assert iob2 == ["B-ORG", "I-ORG", "B-ORG", "I-ORG", "O", "O", "O"]
assert iob2_to_iob1(iob2) == iob1  # the round trip is exact
assert get_chunks(iob1) == get_chunks(iob2) == [("ORG", 0, 2), ("ORG", 2, 4)]  # same two clubs

# %% [markdown]
# ## Step 4: span F1, by hand
#
# `conlleval` scores *entities*, not tags. A predicted entity counts only if a gold entity has
# the same type, the same first word and the same last word. Precision = correct / predicted,
# recall = correct / gold, F1 = their harmonic mean. Work it out on paper first:
#
# | word  | Angela | Merkel | flog | nach | New   | York  | und  | Paris |
# |-------|--------|--------|------|------|-------|-------|------|-------|
# | gold  | I-PER  | I-PER  | O    | O    | I-LOC | I-LOC | O    | I-LOC |
# | pred  | I-PER  | O      | O    | O    | I-LOC | I-LOC | O    | I-ORG |
#
# Gold: PER 0-1, LOC 4-5, LOC 7. Predicted: PER 0 (too short: wrong), LOC 4-5 (right), ORG 7
# (wrong type). So 1 correct of 3 predicted and of 3 gold: P = R = F1 = 1/3.

# %%
gold = ["I-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "O", "I-LOC"]
pred = ["I-PER", "O", "O", "O", "I-LOC", "I-LOC", "O", "I-ORG"]
gold_spans = {("PER", 0, 2), ("LOC", 4, 6), ("LOC", 7, 8)}  # (type, first, last + 1), by hand
pred_spans = {("PER", 0, 1), ("LOC", 4, 6), ("ORG", 7, 8)}
correct = len(gold_spans & pred_spans)
p, r = correct / len(pred_spans), correct / len(gold_spans)
f1 = 2 * p * r / (p + r)
print(f"by hand: P {p:.3f} R {r:.3f} F1 {f1:.3f}")

# %%
result = score([gold], [pred])  # the library, conlleval's rules
assert set(get_chunks(gold)) == gold_spans and set(get_chunks(pred)) == pred_spans
assert (result.precision, result.recall) == (p, r) and abs(result.f1 - f1) < 1e-12
assert result.accuracy == 6 / 8  # token accuracy counts tags: far kinder than span F1

# %% [markdown]
# ## Exercises
#
# 1. Tag the word "Merkel" with `B-PER` in the prediction. Is it still one PER entity? What do
#    IOB1 and IOB2 each say, and what does `score` answer?
# 2. Re-run Step 2 with `overlap=0`. Which words now sit at the very edge of a window, with no
#    context on one side?
# 3. Why put the label on the *first* piece and not the last? Find a language in chapter 1
#    where the last piece would carry more information (think of case endings).
# 4. Score IOB1 gold against IOB2 predictions of the same entities. Which number drops, F1 or
#    accuracy, and why is that the right behaviour?
