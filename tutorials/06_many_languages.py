# %% [markdown]
# # 6. One model, many languages, and zero-shot
#
# **What you will build:** a multilingual NER run with the library's `train()`: one model, one
# label set, one vocabulary, trained on English, German, Spanish and Russian at once, and scored
# after every epoch on all five sample languages, including Dutch, which it never sees in
# training. That last score is *zero-shot* (the paper's Table 3).
#
# **You need:** chapter 4 (windows, F1) and chapter 5 (what one training step does).
#
# **Time:** 15 minutes to read; the run takes a minute or two on a laptop CPU.

# %%
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
TINY = os.environ.get("MINIBERT_TUTORIAL_TINY") == "1"  # the test sets this: a shorter run
WORK = tempfile.TemporaryDirectory()  # the run folder goes here; deleted when Python exits
from minibert_ner.data import build_label_list, read_conll  # noqa: E402
from minibert_ner.runs import load_ner_model, read_log  # noqa: E402
from minibert_ner.train import TrainConfig, train  # noqa: E402

SAMPLE = REPO / "data" / "sample"
LANGS = ["en", "de", "es", "nl", "ru"]

# %% [markdown]
# ## Step 1: the languages share one label set
#
# A multilingual model is possible because NER means the same thing in every language: the
# labels do not depend on the language, only the words do. Pooling the data gives one label
# list. (The sample is synthetic: entity names repeat across sentences, so scores here say
# nothing about real NER.)

# %%
by_lang = {lang: read_conll(SAMPLE / lang / "train.txt", scheme="IOB1") for lang in LANGS}
for lang, sentences in by_lang.items():
    print(lang, " ".join(f"{w}/{t}" for w, t in zip(sentences[1].words, sentences[1].tags))[:90])
labels_each = {lang: build_label_list(sentences) for lang, sentences in by_lang.items()}

# %%
assert all(labels == labels_each["en"] for labels in labels_each.values())  # one head serves all five
assert labels_each["en"][0] == "O"

# %% [markdown]
# ## Step 2: configure a zero-shot run
#
# `TrainConfig` holds every knob; its defaults are the paper's (lr 5e-5, batch 32, 20 epochs,
# windows of 64 overlapping by 8). We change what a small *random* model on a CPU needs: a much
# higher learning rate and a few epochs. `target=["nl"]` picks the model on Dutch dev F1, and we
# simply leave Dutch out of `train`. With no `model` folder, `train()` learns a WordPiece vocab
# from the training sentences and builds a small BERT shaped by `tiny`.

# %%
files = lambda split, langs: [(lang, str(SAMPLE / lang / f"{split}.txt")) for lang in langs]  # noqa: E731
train_langs = ["en", "de", "es", "ru"]
cfg = TrainConfig(
    train=files("train", train_langs), dev=files("dev", LANGS), test=files("test", ["nl"]), target=["nl"],
    epochs=4 if TINY else 6, max_sentences=100 if TINY else 300, batch_size=16, lr=2e-3,
    tiny=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    out=str(Path(WORK.name) / "zero-shot-nl"), device="cpu", quiet=True, seed=1)
print({k: v for k, v in vars(cfg).items() if k in ("target", "epochs", "lr", "batch_size", "max_len", "overlap")})

# %% [markdown]
# ## Step 3: train
#
# Every epoch the training windows of all four languages are shuffled *together*, so each batch
# mixes languages (the paper: "we randomly mix sentences from all languages"). After each epoch
# every dev set is scored; the best epoch by Dutch dev F1 is kept in `out/best`.

# %%
result = train(cfg)
history = read_log(cfg.out)  # RUN/log.jsonl: one record per epoch
print("epoch  " + "  ".join(f"{lang:>5}" for lang in LANGS))
for record in history:
    print(f"{record['epoch']:>5}  " + "  ".join(f"{record['dev'][lang]['f1'] * 100:5.1f}" for lang in LANGS))
print(f"best epoch {result['best_epoch']}, Dutch test F1 {result['test']['nl'] * 100:.1f}")

# %% [markdown]
# **Check yourself.** Dutch was never trained on; the model still learnt the four others.

# %%
saved = json.loads((Path(cfg.out) / "best" / "config.json").read_text())["minibert_ner"]["train_config"]
assert [lang for lang, _ in saved["train"]] == train_langs  # no Dutch in training
final = history[-1]["dev"]
seen = sum(final[lang]["f1"] for lang in train_langs) / len(train_langs)
assert seen > 0.3 and seen > final["nl"]["f1"]  # learnt, and zero-shot is the hard case
assert result["best_dev_f1"] == max(r["dev"]["nl"]["f1"] for r in history)  # selected on the target

# %% [markdown]
# ## Step 4: why is zero-shot so poor here?
#
# The paper's zero-shot Dutch reaches 79 F1 because mBERT was *pre-trained* on Wikipedia in 104
# languages: "Amsterdam" and a Dutch sentence's shape already sit near their English and German
# counterparts before any NER training. Our model starts from random weights, and its vocabulary
# was learnt from the four training languages only, so Dutch words arrive as unfamiliar
# fragments. Look at what it does with a Dutch sentence:

# %%
model, tok = load_ner_model(cfg.out)  # the best checkpoint, in eval mode
dutch = read_conll(SAMPLE / "nl" / "dev.txt")[0]
pieces = [tok.convert_ids_to_tokens(tok.encode_words([w])[0]) for w in dutch.words]
print([" ".join(p) for p in pieces][:12])
print("pieces per Dutch word:", sum(map(len, pieces)) / len(pieces))

# %%
assert all(len(p) >= 1 for p in pieces)  # every word survives, in pieces
assert model.labels == labels_each["en"]  # the saved model carries its label list

# %% [markdown]
# ## Exercises
#
# 1. Add `"nl"` to `train_langs` (and drop `target`). How much higher is Dutch dev F1 when the
#    model has seen Dutch? That gap is what zero-shot costs.
# 2. Train on English alone (BERT-SL^Eng in Table 3) and compare zero-shot Dutch with the
#    four-language run. Does more languages help a random model, as it helps mBERT?
# 3. With `all-MiniLM-L6-v2` installed, set `model=` to its folder and `lowercase=True`,
#    `lr=5e-5`: a *pretrained* (English-only) encoder. What happens to Dutch and to Russian?
# 4. Plot `dev_f1.svg` from the run folder for 20 epochs. Does Dutch peak early and then fall,
#    as in the paper's Figure 2?
