# %% [markdown]
# # 8. Multitask regularisation: language ID, cloze, predictive cloze
#
# **What you will build:** the paper's second fix for zero-shot over-fitting ("Multi-task
# Learning"): while training NER on labelled languages, also train on *unlabeled* text of the
# target language with an auxiliary loss. Three of them: LI (which language is this? read from
# `[CLS]`), CL (cloze: guess randomly masked pieces, as BERT was pre-trained) and PC
# (predictive cloze: mask what the NER model currently thinks are entities, and guess those).
# You will look at the masks on a real sentence, then take one training step with each.
#
# **You need:** chapters 4 (windows), 5 (a training step) and 7 (why regularise at all).
#
# **Time:** 20 minutes to read; runs in a few seconds.

# %%
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(REPO))  # use this checkout of the library (not needed after `pip install -e .`)
WORK = tempfile.TemporaryDirectory()  # every file we write goes here; deleted when Python exits
from minibert_ner.data import build_label_list, read_conll, read_text  # noqa: E402
from minibert_ner.heads import NERModel, ner_loss  # noqa: E402
from minibert_ner.model import BertConfig, BertModel  # noqa: E402
from minibert_ner.scoring import get_chunks  # noqa: E402
from minibert_ner.tokenizer import WordPieceTokenizer, train_vocab  # noqa: E402
from minibert_ner.train import TrainConfig, aux_losses, make_optimizer  # noqa: E402
from minibert_ner.windows import IGNORE_INDEX, MaskVocab, cloze_mask, collate, encode_sentences, predictive_cloze_mask  # noqa: E402

torch.manual_seed(0)
SAMPLE, LANGS = REPO / "data" / "sample", ["de", "en", "es", "nl", "ru"]
labelled = [s for lang in ["en", "de", "es"] for s in read_conll(SAMPLE / lang / "train.txt", scheme="IOB1")[:40]]
unlabeled = read_text(SAMPLE / "unlabeled" / "nl.txt", "nl")[:64]  # raw Dutch: the zero-shot target
tok = WordPieceTokenizer.from_file(train_vocab([w for s in labelled + unlabeled for w in s.words], 1500,
                                               Path(WORK.name) / "vocab.txt"))
labels = build_label_list(labelled)
encode = lambda sentences: encode_sentences(sentences, tok, {t: i for i, t in enumerate(labels)},  # noqa: E731
                                            {lang: i for i, lang in enumerate(LANGS)})

# %% [markdown]
# ## Step 1: cloze masking (CL)
#
# BERT's pre-training task: choose 15% of the real pieces; of those, 80% become `[MASK]`, 10% a
# random piece, 10% stay as they are; the model must recover the original piece at each chosen
# position. `[CLS]`, `[SEP]` and padding are never chosen. `targets` holds the original id at
# chosen positions and `IGNORE_INDEX` everywhere else.

# %%
sentence = read_conll(SAMPLE / "nl" / "dev.txt")[3]  # we use its tags only to show masks
batch = collate(encode([sentence]), tok.pad_token_id)
vocab = MaskVocab.of(tok)  # [CLS], [SEP] and padding are never masked
gen = torch.Generator().manual_seed(3)
masked, targets = cloze_mask(batch.input_ids, batch.attention_mask, vocab, 0.15, gen)
show = lambda ids: " ".join(tok.convert_ids_to_tokens(ids.tolist()))  # noqa: E731
print("input :", show(batch.input_ids[0]))
print("masked:", show(masked[0]))

# %% [markdown]
# One sentence is too small to check rates; over all Dutch windows they should be close to
# 15% and 80/10/10.

# %%
big = collate(encode(unlabeled), tok.pad_token_id)
m, t = cloze_mask(big.input_ids, big.attention_mask, vocab, 0.15, gen)
chosen = t != IGNORE_INDEX
eligible = big.attention_mask.bool() & ~torch.isin(big.input_ids, torch.tensor(vocab.special_ids))
print(f"chosen {chosen.sum() / eligible.sum():.1%} of pieces; [MASK] at {(m[chosen] == tok.mask_token_id).float().mean():.0%} of them")

# %%
assert not (chosen & ~eligible).any()  # never [CLS], [SEP] or padding
assert torch.equal(t[chosen], big.input_ids[chosen])  # targets are the original pieces
assert torch.equal(m[~chosen], big.input_ids[~chosen])  # nothing else is touched
assert 0.12 < chosen.sum() / eligible.sum() < 0.20
assert 0.7 < (m[chosen] == tok.mask_token_id).float().mean() < 0.9

# %% [markdown]
# ## Step 2: predictive cloze masking (PC)
#
# PC masks *entities*: every piece of every word that the NER model currently tags as part of
# an entity, always with `[MASK]`. To see the mask clearly we pretend the model is perfect and
# pass the gold labels as its predictions.

# %%
predicted = batch.labels.clamp(min=0)  # gold label ids where a word starts; 'O' (0) elsewhere
pc_masked, pc_targets = predictive_cloze_mask(batch.input_ids, batch.word_ids, batch.is_first, predicted,
                                              labels, tok.mask_token_id)
print("words :", list(zip(sentence.words, sentence.tags)))
print("masked:", show(pc_masked[0]))

# %%
entity_words = {w for _, start, end in get_chunks(sentence.tags) for w in range(start, end)}
expected = torch.tensor([w in entity_words for w in batch.word_ids[0].tolist()])
assert entity_words and torch.equal(pc_masked[0] == tok.mask_token_id, expected)  # all pieces of entity words
assert torch.equal(pc_targets[0][expected], batch.input_ids[0][expected])

# %% [markdown]
# ## Step 3: one model, three heads
#
# The NER head reads every piece; the language-ID head is one linear layer on `[CLS]`; the cloze
# head is BERT's masked-LM head, its output matrix *tied* to the word embeddings. All three sit
# on the same encoder, so each auxiliary loss also shapes the encoder the NER head uses.

# %%
config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=128, max_position_embeddings=64)
model = NERModel(BertModel(config), labels, languages=LANGS, cloze=True).train()
ner_batch = collate(encode(labelled[:16]), tok.pad_token_id)
aux_batch = collate(encode(unlabeled[:16]), tok.pad_token_id)
h = model.encode(aux_batch.input_ids, aux_batch.attention_mask)  # (B, T, C)
print("LI logits", tuple(model.language_logits(h).shape), " NER logits", tuple(model.ner_logits(h).shape))
assert model.language_logits(h).shape == (16, len(LANGS))

# %% [markdown]
# ## Step 4: one training step with each auxiliary loss
#
# `aux_losses` builds the masks and computes the losses on the unlabeled batch; the step adds
# them, unweighted, to the NER loss of a labelled batch. We check which heads receive a gradient,
# and that the auxiliary loss on the same batch (same mask: same generator seed) goes down.

# %%
def aux_step(task):
    cfg = TrainConfig(aux=[task], lr=3e-3)
    optimizer = make_optimizer(model, cfg)
    aux = aux_losses(model, aux_batch, cfg, tok, torch.Generator().manual_seed(0))
    loss = ner_loss(model(ner_batch.input_ids, ner_batch.attention_mask), ner_batch.labels) + sum(aux.values())
    loss.backward()
    grads = {name: model.get_submodule(name).weight.grad is not None for name in ("language_classifier", "cls.predictions.transform.dense")}
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()  # measure without dropout, on the same mask
    with torch.no_grad():
        before = {k: round(v.item(), 3) for k, v in aux.items()}
        after = {k: round(v.item(), 3) for k, v in aux_losses(model, aux_batch, cfg, tok, torch.Generator().manual_seed(0)).items()}
    model.train()
    print(f"{task}: losses {before} -> {after}; gradients reached {[k for k, v in grads.items() if v]}")
    return before, after, grads


li, cl, pc = aux_step("LI"), aux_step("CL"), aux_step("PC")

# %%
assert li[2] == {"language_classifier": True, "cls.predictions.transform.dense": False}
assert cl[2] == {"language_classifier": False, "cls.predictions.transform.dense": True}
assert li[1]["li"] < li[0]["li"] and cl[1]["cloze"] < cl[0]["cloze"]
# PC masks what the NER head predicts. A barely trained head predicts almost no entity, and then
# PC has nothing to mask: its loss is exactly 0 and it teaches nothing (see exercise 2).
model.eval()
with torch.no_grad():
    guesses = model.predict(aux_batch.input_ids, aux_batch.attention_mask)[aux_batch.is_first]
model.train()
assert (pc[0]["cloze"] > 0) == bool((guesses != labels.index("O")).any())

# %% [markdown]
# ## Exercises
#
# 1. In Step 1, raise `p` to 0.5. Why does BERT not simply mask 50%? What would the model lose?
# 2. PC's targets depend on the NER head's predictions. Early in training it predicts rubbish:
#    what does PC learn then? Would you start PC after a few epochs of NER alone?
# 3. Combine CL and LI (`aux=["CL", "LI"]`) and print which heads get gradients. Why can LI share
#    the masked forward pass with CL? (Hint: is `[CLS]` ever masked?)
# 4. Table 3 shows no auxiliary task wins everywhere. Propose a per-task weight for the summed
#    loss and a way to choose it without touching the target language's labels.
