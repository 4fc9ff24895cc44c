"""Tests for minibert_ner.windows: first-piece labels, overlapping windows, batching, cloze masks."""
from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import given, settings, strategies as st

from minibert_ner.windows import (IGNORE_INDEX, MaskVocab, Windowing, tagged_pieces, Batch, batch_indices, cloze_mask, collate,
                                  encode_sentences, merge_predictions, predictive_cloze_mask,
                                  split_windows)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
LABELS = ["O", "I-LOC", "I-PER", "B-PER"]
LABEL_TO_ID = {tag: i for i, tag in enumerate(LABELS)}
LANG_TO_ID = {"de": 0, "en": 1}


@dataclass
class FakeSentence:
    words: list
    tags: list = field(default_factory=list)
    lang: str = "de"
    source: str = "fake.txt"
    line: int = 1


class FakeTokenizer:
    """Word -> len(word) // 3 + 1 pieces; ids handed out in order of first sight, from 10 up."""
    cls_token_id, sep_token_id, pad_token_id, mask_token_id = CLS, SEP, PAD, MASK

    def __init__(self):
        self.vocab = {}

    def encode_words(self, words):
        piece_ids, word_index = [], []
        for i, word in enumerate(words):
            for k in range(len(word) // 3 + 1):
                piece_ids.append(self.vocab.setdefault(f"{word}#{k}", 10 + len(self.vocab)))
                word_index.append(i)
        return piece_ids, word_index


def encode(sentences, **kwargs):
    return encode_sentences(sentences, FakeTokenizer(), LABEL_TO_ID, LANG_TO_ID, Windowing(**kwargs))


# ---------------------------------------------------------------- split_windows
@pytest.mark.parametrize("n, expected", [
    (0, []),
    (1, [(0, 1)]),
    (62, [(0, 62)]),                        # 62 pieces + [CLS] + [SEP] = 64 exactly
    (63, [(0, 62), (54, 63)]),              # next window starts 8 pieces before the cut
    (117, [(0, 62), (54, 116), (108, 117)]),
])
def test_split_windows_examples(n, expected):
    assert split_windows(list(range(n)), [0] * n) == expected


@pytest.mark.parametrize("max_len, overlap", [(10, 8), (3, 1), (64, -1)])
def test_split_windows_rejects_impossible_sizes(max_len, overlap):
    with pytest.raises(ValueError, match="max_len|overlap"):
        split_windows([5, 6, 7], [0, 1, 2], max_len=max_len, overlap=overlap)


def test_split_windows_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 pieces but 3"):
        split_windows([5, 6], [0, 1, 2])


@st.composite
def sizes(draw):
    max_len = draw(st.integers(3, 80))
    return max_len, draw(st.integers(0, max_len - 3))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 600), size=sizes())
def test_split_windows_properties(n, size):
    max_len, overlap = size
    spans = split_windows(list(range(n)), [0] * n, max_len, overlap)
    assert all(0 < end - start <= max_len - 2 for start, end in spans)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert e0 - s1 == overlap and e1 > e0   # exact overlap, and new pieces every time
    covered = {p for start, end in spans for p in range(start, end)}
    assert covered == set(range(n))


# ---------------------------------------------------------------- encode_sentences
def test_first_piece_alignment_by_hand():
    # pieces per word: I 1, met 2, Angela 3, in 1, Bonn 2
    sentence = FakeSentence(["I", "met", "Angela", "in", "Bonn"], ["O", "O", "I-PER", "O", "I-LOC"])
    (window,) = encode([sentence])
    X = IGNORE_INDEX
    assert window.input_ids[0] == CLS and window.input_ids[-1] == SEP and len(window.input_ids) == 11
    assert window.word_ids == [-1, 0, 1, 1, 2, 2, 2, 3, 4, 4, -1]
    assert window.is_first == [False, True, True, False, True, False, False, True, True, False, False]
    assert window.labels == [X, 0, 0, X, 2, X, X, 0, 1, X, X]
    assert window.scored == window.is_first  # a single window scores every word
    assert (window.sentence, window.lang) == (0, LANG_TO_ID["de"])


def test_first_piece_alignment_real_wordpiece(mbert_vocab):
    tokenizer_module = pytest.importorskip("minibert_ner.tokenizer")
    tokenizer = tokenizer_module.WordPieceTokenizer.from_file(mbert_vocab)
    sentences = [FakeSentence(["Köln", "liegt", "am", "Rhein"], ["I-LOC", "O", "O", "I-LOC"]),
                 FakeSentence(["Am", "Rheinufer"], ["O", "I-LOC"])]  # Rhein ##ufer
    first, second = encode_sentences(sentences, tokenizer, LABEL_TO_ID, LANG_TO_ID)
    cls, sep, X = tokenizer.cls_token_id, tokenizer.sep_token_id, IGNORE_INDEX
    assert first.input_ids == [cls] + [tokenizer.vocab[w] for w in ["Köln", "liegt", "am", "Rhein"]] + [sep]
    assert first.labels == [X, 1, 0, 0, 1, X]
    assert tokenizer.convert_ids_to_tokens(second.input_ids[1:-1]) == ["Am", "Rhein", "##ufer"]
    assert second.labels == [X, 0, 1, X, X]  # ##ufer is an 'X' piece


def test_unlabeled_sentence_gets_only_ignore_index():
    windows = encode([FakeSentence(["word"] * 40, tags=[])])  # 80 pieces -> 2 windows
    assert len(windows) == 2
    assert all(label == IGNORE_INDEX for w in windows for label in w.labels)
    assert sum(sum(w.scored) for w in windows) == 40  # still predictable


def test_unknown_tag_names_source_and_line():
    sentence = FakeSentence(["Ada", "Lovelace"], ["I-PER", "B-MISC"], source="train.txt", line=17)
    with pytest.raises(ValueError, match=r"train\.txt:17.*B-MISC"):
        encode([sentence])


def test_empty_sentence_gets_no_window():
    windows = encode([FakeSentence([]), FakeSentence(["a"], ["O"])])
    assert [w.sentence for w in windows] == [1]
    assert merge_predictions(windows, [[0, 0, 0]], [FakeSentence([]), FakeSentence(["a"])]) == [[], [0]]


def test_batch_encoding_is_used_when_the_tokenizer_has_it():
    class BatchTokenizer(FakeTokenizer):
        calls = 0

        def encode_batch_words(self, sentences):
            BatchTokenizer.calls += 1
            return [self.encode_words(words) for words in sentences]

    sentences = [FakeSentence(["abc", "d"], ["O", "I-PER"]), FakeSentence(["efgh"], ["O"])]
    batched = encode_sentences(sentences, BatchTokenizer(), LABEL_TO_ID, LANG_TO_ID)
    assert BatchTokenizer.calls == 1 and batched == encode(sentences)


words_strategy = st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=14),
                          min_size=0, max_size=120)


@settings(max_examples=100, deadline=None)
@given(words=words_strategy, size=sizes(), data=st.data())
def test_encode_properties(words, size, data):
    max_len, overlap = size
    tags = [data.draw(st.sampled_from(LABELS)) for _ in words]
    windows = encode([FakeSentence(words, tags)], max_len=max_len, overlap=overlap)
    seen_labels = {}
    for w in windows:
        T = len(w.input_ids)
        assert T <= max_len and len(w.labels) == len(w.word_ids) == len(w.is_first) == len(w.scored) == T
        assert w.input_ids[0] == CLS and w.input_ids[-1] == SEP and w.word_ids[0] == w.word_ids[-1] == -1
        for t in range(T):
            if w.is_first[t]:
                assert w.labels[t] == LABEL_TO_ID[tags[w.word_ids[t]]]
                seen_labels.setdefault(w.word_ids[t], set()).add(w.labels[t])
            else:  # 'X' pieces and specials: never in the loss
                assert w.labels[t] == IGNORE_INDEX and not w.scored[t]
    # every labelled word shows its first piece, with its label, in at least one window
    assert seen_labels == {i: {LABEL_TO_ID[tag]} for i, tag in enumerate(tags)}
    scored = sorted(w.word_ids[t] for w in windows for t in range(len(w.scored)) if w.scored[t])
    assert scored == list(range(len(words)))  # exactly one scoring window per word


@pytest.mark.parametrize("overlap", [8, 7])
def test_merge_500_words_picks_the_window_furthest_from_the_cut(overlap):
    words = [["a", "abcd", "abcdefg"][i % 3] for i in range(500)]  # 1, 2, 3 pieces
    sentences = [FakeSentence(["x"]), FakeSentence(words)]
    windows = encode(sentences, overlap=overlap)
    assert len(windows) > 10
    # window k predicts 1000 * k + word id, so the merged value says which window won
    predictions = [[1000 * k + max(wid, 0) for wid in w.word_ids] for k, w in enumerate(windows)]
    merged = merge_predictions(windows, predictions, sentences)
    assert [len(m) for m in merged] == [1, 500]
    spans = split_windows(*FakeTokenizer().encode_words(words), overlap=overlap)
    for word, value in enumerate(merged[1]):
        k, wid = divmod(value, 1000)
        assert wid == word
        # independent statement of the rule: among the windows holding the word's first piece,
        # the winner has the most pieces between it and a cut edge (ties go to the later window)
        first_piece = next(p for p, wi in enumerate(FakeTokenizer().encode_words(words)[1]) if wi == word)
        holders = [j for j, (s, e) in enumerate(spans) if s <= first_piece < e]
        def room(j):
            s, e = spans[j]
            left = first_piece - s if j > 0 else 10**9
            right = e - 1 - first_piece if j < len(spans) - 1 else 10**9
            return min(left, right), j
        assert k - 1 == max(holders, key=room), (word, holders)  # window 0 is sentence 0's


def test_merge_rejects_missing_and_duplicate_predictions():
    sentences = [FakeSentence(["a", "b"], ["O", "O"])]
    (window,) = encode(sentences)
    with pytest.raises(ValueError, match="two windows"):
        merge_predictions([window, window], [[0] * 4, [0] * 4], sentences)
    window.scored[2] = False
    with pytest.raises(ValueError, match="word 1 got no prediction"):
        merge_predictions([window], [[0] * 4], sentences)


# ---------------------------------------------------------------- collate
def test_collate_pads_each_field_with_its_own_value():
    sentences = [FakeSentence(["a"], ["I-PER"], lang="en"), FakeSentence(["abc", "d"], ["O", "O"])]
    short, long = encode(sentences)                  # 3 and 5 positions
    batch = collate([short, long], pad_id=PAD, index=[7, 9])
    assert batch.input_ids.shape == (2, 5) and batch.input_ids.dtype == torch.long
    assert batch.input_ids[0].tolist() == short.input_ids + [PAD, PAD]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.labels[0].tolist() == [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert batch.word_ids[0].tolist() == [-1, 0, -1, -1, -1]
    assert batch.is_first.dtype == torch.bool and batch.is_first[0].tolist() == [False, True, False, False, False]
    assert batch.lang_ids.tolist() == [1, 0] and batch.index == [7, 9]
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved is not batch and torch.equal(moved.labels, batch.labels)
    assert collate([short], pad_id=PAD).index == [0]


# ---------------------------------------------------------------- batch_indices
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("n, batch_size", [(0, 4), (1, 4), (103, 8), (1000, 7)])
def test_batch_indices_cover_every_index_once(shuffle, bucket, n, batch_size):
    lengths = [(i * 37) % 60 + 3 for i in range(n)]
    batches = batch_indices(lengths, batch_size, shuffle=shuffle, bucket=bucket,
                            generator=torch.Generator().manual_seed(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n)) and all(0 < len(b) <= batch_size for b in batches)
    assert sum(len(b) < batch_size for b in batches) <= 1  # only one short batch
    if not shuffle and not bucket:
        assert flat == list(range(n))


def test_batch_indices_reproducible_and_changing_between_epochs():
    lengths = [(i * 37) % 60 + 3 for i in range(500)]
    generator = torch.Generator().manual_seed(1234)
    epoch1, epoch2 = (batch_indices(lengths, 16, generator=generator) for _ in range(2))
    assert epoch1 != epoch2  # the generator's state advanced
    again = torch.Generator().manual_seed(1234)
    assert batch_indices(lengths, 16, generator=again) == epoch1


def test_batch_indices_buckets_similar_lengths_and_mixes_languages():
    generator = torch.Generator().manual_seed(0)
    # two languages, each a block of windows: a sampler that did not shuffle globally would
    # serve all of one language before the other
    lengths = [int(x) for x in torch.randint(3, 65, (2000,), generator=generator)]
    langs = [0] * 1000 + [1] * 1000

    def spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    bucketed = batch_indices(lengths, 32, generator=generator)
    plain = batch_indices(lengths, 32, bucket=False, generator=generator)
    assert spread(bucketed) <= 3 < 40 < spread(plain)
    first_half = [langs[i] for b in bucketed[: len(bucketed) // 2] for i in b]
    assert 0.4 < sum(first_half) / len(first_half) < 0.6
    assert sum(len({langs[i] for i in b}) == 2 for b in bucketed) > 0.9 * len(bucketed)


# ---------------------------------------------------------------- cloze masks
def random_batch(B=512, T=64, vocab_size=1000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (B,), generator=generator)                   # (B,)
    attention_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()          # (B, T)
    input_ids = torch.randint(10, vocab_size, (B, T), generator=generator)
    input_ids[:, 0] = CLS
    input_ids[torch.arange(B), lengths - 1] = SEP
    return input_ids.masked_fill(attention_mask == 0, PAD), attention_mask


def test_cloze_mask_rates_and_positions():
    input_ids, attention_mask = random_batch()
    original = input_ids.clone()
    masked, targets = cloze_mask(input_ids, attention_mask, MaskVocab((PAD, CLS, SEP, MASK), MASK, 1000),
                                 generator=torch.Generator().manual_seed(1))
    assert torch.equal(input_ids, original)  # inputs are not modified in place
    eligible = (attention_mask == 1) & (input_ids != CLS) & (input_ids != SEP)
    chosen = targets != IGNORE_INDEX
    assert not (chosen & ~eligible).any()  # never specials or padding
    rate = chosen.sum().item() / eligible.sum().item()
    assert 0.13 < rate < 0.17, rate
    assert torch.equal(targets[chosen], input_ids[chosen])
    assert torch.equal(masked[~chosen], input_ids[~chosen])
    n = chosen.sum().item()
    to_mask = (masked[chosen] == MASK).sum().item() / n
    kept = (masked[chosen] == input_ids[chosen]).sum().item() / n
    assert 0.77 < to_mask < 0.83 and 0.08 < kept < 0.12 and 0.08 < 1 - to_mask - kept < 0.12
    assert chosen.any(dim=1).all()  # every row has a real piece, so every row has a target


def test_cloze_mask_forces_one_target_per_row_and_is_seeded():
    input_ids = torch.tensor([[CLS, 50, SEP, PAD], [CLS, SEP, PAD, PAD]])
    attention_mask = (input_ids != PAD).long()
    for seed in range(20):
        masked, targets = cloze_mask(input_ids, attention_mask, MaskVocab((PAD, CLS, SEP), MASK, 100),
                                     generator=torch.Generator().manual_seed(seed))
        assert targets.tolist() == [[IGNORE_INDEX, 50, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX] * 4]
    args = (*random_batch(B=8), MaskVocab((PAD, CLS, SEP), MASK, 1000))
    first = cloze_mask(*args, generator=torch.Generator().manual_seed(3))
    second = cloze_mask(*args, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_predictive_cloze_masks_every_piece_of_predicted_entities():
    pytest.importorskip("minibert_ner.scoring")
    X = IGNORE_INDEX
    O, LOC, PER, BPER = (LABEL_TO_ID[t] for t in ["O", "I-LOC", "I-PER", "B-PER"])
    # row 0: [CLS] w0 w1 w1' w2 w2' w2'' w3 w4 w4' [SEP] pad, predicted O I-PER B-PER O I-LOC
    #        (IOB1: B-PER right after I-PER is a second, adjacent PER entity)
    # row 1: a window that starts inside word 5 (its tail, no first piece here), then w6 w6' w7
    input_ids = torch.tensor([[CLS, 20, 21, 22, 23, 24, 25, 26, 27, 28, SEP, PAD],
                              [CLS, 30, 31, 32, 33, SEP, PAD, PAD, PAD, PAD, PAD, PAD]])
    word_ids = torch.tensor([[-1, 0, 1, 1, 2, 2, 2, 3, 4, 4, -1, -1],
                             [-1, 5, 6, 6, 7, -1, -1, -1, -1, -1, -1, -1]])
    is_first = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0],
                             [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    # predictions at non-first positions are junk (PER) and must be ignored
    predicted = torch.tensor([[PER, O, PER, O, BPER, PER, PER, O, LOC, O, PER, PER],
                              [PER, PER, LOC, PER, O, PER, PER, PER, PER, PER, PER, PER]])
    masked, targets = predictive_cloze_mask(input_ids, word_ids, is_first, predicted, LABELS, MASK)
    M = MASK
    assert masked.tolist() == [[CLS, 20, M, M, M, M, M, 26, M, M, SEP, PAD],
                               [CLS, 30, M, M, 33, SEP, PAD, PAD, PAD, PAD, PAD, PAD]]
    assert targets.tolist() == [[X, X, 21, 22, 23, 24, 25, X, 27, 28, X, X],
                                [X, X, 31, 32, X, X, X, X, X, X, X, X]]
    nothing = predictive_cloze_mask(input_ids, word_ids, is_first, torch.zeros_like(predicted),
                                    LABELS, MASK)
    assert torch.equal(nothing[0], input_ids) and (nothing[1] == X).all()


def test_real_corpus_labels_survive_windowing_and_merging(shared_data, mbert_vocab):
    # gold labels fed back as "predictions" must come out of merge_predictions word for word
    data = pytest.importorskip("minibert_ner.data")
    tokenizer_module = pytest.importorskip("minibert_ner.tokenizer")
    tokenizer = tokenizer_module.WordPieceTokenizer.from_file(mbert_vocab)
    sentences = data.read_conll(shared_data / "conll2002" / "nl" / "ned.testa", lang="nl")
    labels = data.build_label_list(sentences)
    label_to_id = {tag: i for i, tag in enumerate(labels)}
    windows = encode_sentences(sentences, tokenizer, label_to_id, {"nl": 0})
    assert len(windows) > len(sentences) and max(len(w.input_ids) for w in windows) == 64
    merged = merge_predictions(windows, [w.labels for w in windows], sentences)
    for i, (ids, sentence) in enumerate(zip(merged, sentences)):
        assert ids == [label_to_id[tag] for tag in sentence.tags], f"first mismatch: sentence {i}"


def test_the_content_rule_tags_the_piece_after_a_bare_metaspace():
    # words: "Köln" -> [10], "." -> ["▁"=6, "."=5], "x" -> ["▁"] alone (it keeps its one piece)
    ids, owners = [10, 6, 5, 6], [0, 1, 1, 2]
    assert tagged_pieces(ids, owners) == [True, True, False, True]  # the paper's rule: first pieces
    assert tagged_pieces(ids, owners, skip_id=6) == [True, False, True, True]
