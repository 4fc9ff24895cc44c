# %% [markdown]
# # 1. Text to word pieces
#
# **What you will build:** WordPiece, BERT's tokenizer, by hand on a dozen-piece vocabulary; then
# you will use the library's tokenizer on real text in many languages and measure *fertility*,
# the average number of pieces per word (the last row of the paper's Table 2: English 1.8,
# Chinese 2.31, Arabic 7.42).
#
# **You need:** Python strings and dicts. No PyTorch yet.
#
# **Time:** 15 minutes to read; the script runs in a few seconds.
#
# Run it with `python tutorials/01_wordpieces.py`, or open it as a notebook with jupytext.

# %%
import os
import sys
import tempfile
from pathlib import Path

# The repository root, whether this runs as a script or cell by cell in a notebook opened in tutorials/.
REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
from minibert_ner.data import mbert_vocab_path, shared_data_dir  # noqa: E402

SHARED = shared_data_dir()  # ../shared/data, or $MINIBERT_SHARED_DATA
TINY = os.environ.get("MINIBERT_TUTORIAL_TINY") == "1"  # the test sets this: smaller everything
WORK = tempfile.TemporaryDirectory()  # every file we write goes here; deleted when Python exits

# %% [markdown]
# ## Step 1: greedy longest match, by hand
#
# A BERT vocabulary is a list of strings. A piece that starts a word is stored as is (`un`); a
# piece that continues a word carries the prefix `##` (`##able`). To split a word, take the
# longest prefix the vocabulary knows, then the longest known continuation of the rest, and so
# on. If at some point nothing fits, the *whole word* becomes `[UNK]`: the pieces found so far
# are thrown away.

# %%
VOCAB = {"[UNK]", "un", "##aff", "##a", "##ff", "##able", "play", "##ing", "##s", "K", "##ö", "##ln"}


def wordpiece(word, vocab):
    """Split one word (no spaces, no punctuation) into pieces, longest match first."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # try the longest substring first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:  # no `break`: not even one character matched
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


print(wordpiece("unaffable", VOCAB), wordpiece("plays", VOCAB), wordpiece("Köln", VOCAB))

# %% [markdown]
# **Check yourself.** `##aff` wins over `##a` because it is longer; a word with one unknown
# letter is entirely `[UNK]`.

# %%
assert wordpiece("unaffable", VOCAB) == ["un", "##aff", "##able"]
assert wordpiece("playing", VOCAB) == ["play", "##ing"]
assert wordpiece("Köln", VOCAB) == ["K", "##ö", "##ln"]
assert wordpiece("plaything", VOCAB) == ["[UNK]"]  # "play" fits, then nothing fits "thing"

# %% [markdown]
# ## Step 2: the library's tokenizer does the same, plus a pre-split
#
# `minibert_ner.tokenizer.WordPieceTokenizer` runs exactly this loop, after a *basic* split of
# the text: at whitespace, and around every punctuation character and every Chinese ideograph.
# It needs BERT's five special tokens in the vocabulary; their ids are read from it. Our dozen
# pieces have no `,` or `!`, so those become `[UNK]`.

# %%
from minibert_ner.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer

vocab_file = Path(WORK.name) / "tiny_vocab.txt"
vocab_file.write_text("\n".join([*SPECIAL_TOKENS, *sorted(VOCAB - {"[UNK]"})]) + "\n", encoding="utf-8")
small = WordPieceTokenizer.from_file(vocab_file)
print(small.basic_tokenize("unaffable, Köln!"), small.tokenize("unaffable, Köln!"))

# %%
for word in ["unaffable", "playing", "plays", "Köln", "plaything", "Kölner"]:
    assert small.wordpiece(word) == wordpiece(word, VOCAB), word
assert small.tokenize("unaffable, Köln!") == ["un", "##aff", "##able", "[UNK]", "K", "##ö", "##ln", "[UNK]"]
assert small.tokenize_fast("unaffable, Köln!") == small.tokenize("unaffable, Köln!")  # the Rust path agrees

# %% [markdown]
# ## Step 3: a real vocabulary
#
# The paper uses mBERT's cased vocabulary: 119,547 pieces shared by 104 languages. We load it
# from `../shared/data` when it is there. Otherwise we *train* a small WordPiece vocabulary on
# the bundled synthetic sample, with most of it English and only a little Russian, so that one
# language is well covered and one is not.

# %%
from minibert_ner.data import read_conll
from minibert_ner.tokenizer import train_vocab

MBERT = mbert_vocab_path()
N = 300 if TINY else 3000  # sentences per language
if MBERT.exists():
    tok = WordPieceTokenizer.from_file(MBERT)
    corpora = {lang: [s.words for s in read_conll(SHARED / "wikiann" / lang / f"dev-{lang}.tsv")[:N]]
               for lang in ["en", "de", "fi", "ru", "zh", "ar"]}
    print(f"mBERT cased vocab ({len(tok)} pieces), WikiANN dev sets")
else:
    corpora = {lang: [s.words for s in read_conll(REPO / "data" / "sample" / lang / "train.txt")]
               for lang in ["en", "de", "ru"]}
    words = [w for s in corpora["en"] for w in s] * 5 + [w for s in corpora["ru"][:20] for w in s]
    tok = WordPieceTokenizer.from_file(train_vocab(words, 800, Path(WORK.name) / "sample_vocab.txt"))
    print(f"NOTE: {MBERT} not found; using an {len(tok)}-piece vocab trained mostly on English sample text")
print(tok.tokenize("Angela Merkel besuchte Köln."))

# %% [markdown]
# ## Step 4: fertility
#
# Fertility is pieces per word, over a whole corpus. A word the vocabulary knows costs one piece;
# a word it barely knows costs many. More pieces means longer inputs (only 64 fit in a window,
# chapter 4) and words the model must assemble from fragments.

# %%
def fertility(tokenizer, sentences):
    pieces = sum(len(tokenizer.encode_words(words)[0]) for words in sentences)
    return pieces / sum(len(words) for words in sentences)


fert = {lang: fertility(tok, sents) for lang, sents in corpora.items()}
for lang, value in fert.items():
    print(f"{lang}: {value:.2f} pieces per word")

# %% [markdown]
# **Check yourself.** Every word costs at least one piece, so fertility is at least 1.

# %%
assert all(value >= 1 for value in fert.values())
if MBERT.exists():
    assert 1.2 < fert["en"] < 1.9  # well covered: most English words are one piece
    # WikiANN Chinese is written one character per "word", and mBERT splits every ideograph
    # anyway: fertility is exactly 1. The paper's 2.31 is OntoNotes' word length in characters.
    assert abs(fert["zh"] - 1.0) < 0.01
else:
    assert fert["ru"] > fert["de"] > fert["en"]  # the less of a language in the vocab, the more pieces

# %% [markdown]
# ## Step 5: so why 7.42 for Arabic?
#
# On WikiANN Arabic, mBERT's fertility is about 2, not 7.42. The paper measured OntoNotes
# Arabic, which we cannot check here (it is licensed). Fertility explodes when text is written
# in a form the vocabulary rarely saw. Two candidates for that corpus: short-vowel diacritics
# (every mark becomes its own `##` piece) and romanised (Buckwalter) spellings of Arabic, with
# their `$ < > |` characters, which BERT splits off as punctuation. Both are easy to measure:

# %%
BUCKWALTER = dict(zip("ابتثجحخدذرزسشصضطظعغفقكلمنهويىةءأإآؤئ", "AbtvjHxd*rzs$SDTZEgfqklmnhwyYp'><|&}"))
if MBERT.exists():
    print(tok.tokenize("كتب"), tok.tokenize("كَتَبَ"))  # "he wrote", without and with its vowels
    romanised = [["".join(BUCKWALTER.get(c, c) for c in w) for w in s] for s in corpora["ar"]]
    fert["ar-buckwalter"] = fertility(tok, romanised)
    print(romanised[0], f"fertility {fert['ar-buckwalter']:.2f} vs {fert['ar']:.2f} in Arabic script")
else:
    print("NOTE: no Arabic in the fallback vocab; this step needs the mBERT vocab")

# %%
if MBERT.exists():
    assert tok.tokenize("كتب") == ["كتب"] and len(tok.tokenize("كَتَبَ")) == 6  # 3 letters + 3 vowel marks
    assert fert["ar"] < 3 < fert["ar-buckwalter"]

# %% [markdown]
# The lesson stands either way: the same model sees a language through its vocabulary, and a
# language written in pieces of two or three characters is much harder to tag than one whose
# words are mostly single pieces. (Zero-shot Arabic in Table 2: 12.6 F1.)
#
# ## Exercises
#
# 1. Give `wordpiece` a vocabulary in which greedy longest-match does *not* find the split with
#    the fewest pieces. (Hint: `"ab"`, `"##cd"`, `"abc"`, `"##d"`... which one wins?)
# 2. Why does BERT turn the whole word into `[UNK]` instead of keeping `["play", "[UNK]"]`?
#    What would the model see in each case?
# 3. Run `python -m minibert_ner.tools.tokenize --fertility ../shared/data/wikiann/*/dev-*.tsv` and
#    rank the ten languages. Which scripts are expensive?
# 4. Add the diacritics fatha, kasra, damma and sukun to the `BUCKWALTER` table (as `a i u o`)
#    and estimate what a fully vowelled, romanised corpus would cost. Is 7.42 plausible?
