"""The task heads on top of the shared encoder, and layer freezing (the paper's #frz).

One `NERModel` holds the encoder and every head a run asks for:
  - NER:          dropout + one linear layer per word piece (Figure 1 of the paper);
  - language ID:  one linear layer on the [CLS] piece (the LI task);
  - cloze:        BERT's masked-LM head (dense + GELU + LayerNorm + decoder tied to the word
                  embeddings + bias), shared by the cloze (CL) and predictive-cloze (PC) tasks,
                  initialised from the checkpoint's `cls.predictions` when it has one.
Parameter names follow Hugging Face's BertForTokenClassification (`bert.*`, `classifier.*`) and
BertForMaskedLM (`cls.predictions.*`), so export is a matter of dropping the extra heads.

Freezing (paper, "Experiments: partial updates"): #frz = -1 trains everything; 0 freezes the
embeddings; k freezes the embeddings and the lowest k transformer layers. Frozen parameters
get requires_grad=False (so they get no gradient and stay out of the optimizer), their dropout
is switched to eval mode (footnote 6) in a way that survives every `model.train()` call, and the
frozen part runs under `torch.no_grad()`, so backpropagation stops at the boundary instead of
computing gradients nobody will use.

The frozen part's output per window is kept across epochs by speed.PrefixCache.

Left out: CRF layers, per-task loss weights (the paper sums the losses unweighted).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import ACTIVATIONS
from .speed import Dropout
from .windows import IGNORE_INDEX


class ClozeHead(nn.Module):
    """BERT's masked-LM head. Its decoder is the word-embedding matrix itself (weight tying)."""

    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.transform = nn.ModuleDict(dict(dense=nn.Linear(C, C),
                                            LayerNorm=nn.LayerNorm(C, eps=config.layer_norm_eps)))
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, h, word_embeddings):
        """h: (N, C) hidden states of the masked pieces only; word_embeddings: (V, C). -> (N, V)."""
        h = self.transform.LayerNorm(self.act(self.transform.dense(h)))
        return F.linear(h, word_embeddings, self.bias)


class NERModel(nn.Module):
    """The shared encoder plus the NER head and, when asked for, the language-ID and cloze heads."""

    def __init__(self, bert, labels, languages=None, cloze=False, frz=-1):
        super().__init__()
        C = bert.config.hidden_size
        self.bert = bert
        self.labels = list(labels)  # label id -> tag, "O" first; saved with the model
        self.languages = list(languages or [])
        self.dropout = Dropout(bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(C, len(self.labels))
        self.language_classifier = nn.Linear(C, len(self.languages)) if languages else None
        self.cls = nn.ModuleDict(dict(predictions=ClozeHead(bert.config))) if cloze else None
        # the cloze head's transform too: a checkpoint's MLM head, when there is one, replaces it later
        # (weights.init_cloze_head); without one (pretraining from scratch) it starts as BERT's would
        dense = self.cls.predictions.transform.dense if cloze else None
        for m in (self.classifier, self.language_classifier, dense):
            if m is not None:  # new heads start as BERT initialises its own
                nn.init.normal_(m.weight, std=bert.config.initializer_range)
                nn.init.zeros_(m.bias)
        self.frz = -1
        self.freeze(frz)

    # -- freezing -----------------------------------------------------------------------------

    def frozen_modules(self):
        """The embeddings and the lowest `frz` layers (nothing when frz = -1)."""
        if self.frz < 0:
            return []
        return [self.bert.embeddings, *self.bert.encoder.layer[: self.frz]]

    def freeze(self, frz):
        """Set #frz: -1 nothing, 0 the embeddings, k the embeddings + the lowest k layers."""
        if not -1 <= frz <= self.bert.num_layers:
            raise ValueError(f"frz must be between -1 and {self.bert.num_layers} "
                             f"(the number of layers), not {frz}")
        self.frz = frz
        for p in self.parameters():
            p.requires_grad_(True)
        for m in self.frozen_modules():
            m.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode=True):
        # nn.Module.train() would switch dropout back on everywhere; re-freeze after it so the
        # frozen layers behave exactly as at inference, every epoch, however often this is called.
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    # -- the encoder, split at the freezing boundary -----------------------------------------------

    def frozen_prefix(self, input_ids, attention_mask=None):
        """The frozen part's output (B, T, C), computed without autograd. Deterministic for a given
        input, so it may be cached across epochs. Only for frz >= 0."""
        with torch.no_grad():
            h = self.bert.embed(input_ids)
            return self.bert.run_layers(h, attention_mask, 0, self.frz)

    def encode(self, input_ids, attention_mask=None, prefix=None):
        """Last hidden states (B, T, C). `prefix` is a cached `frozen_prefix` for these inputs."""
        if self.frz < 0:
            return self.bert(input_ids, attention_mask)
        if prefix is None:
            prefix = self.frozen_prefix(input_ids, attention_mask)
        return self.bert.run_layers(prefix, attention_mask, self.frz)

    # -- heads ----------------------------------------------------------------------------------

    def forward(self, input_ids, attention_mask=None, prefix=None, languages=False):
        """NER logits for every piece, (B, T, num_labels); with languages=True also the language-ID
        logits of [CLS], (B, num_languages), from the same pass (LI on labelled windows)."""
        h = self.encode(input_ids, attention_mask, prefix)
        return (self.ner_logits(h), self.language_logits(h)) if languages else self.ner_logits(h)

    def ner_logits(self, h):
        return self.classifier(self.dropout(h))  # (B, T, num_labels)

    def language_logits(self, h):
        """Language-ID logits from the [CLS] piece, (B, num_languages)."""
        if self.language_classifier is None:
            raise RuntimeError("this model has no language-ID head (built without languages=)")
        return self.language_classifier(self.dropout(h[:, 0]))

    def cloze_logits(self, h, targets):
        """Vocabulary logits at the masked positions only (targets != IGNORE_INDEX), (N, V).
        Scoring only those keeps the (B, T, 119547) tensor of full MLM logits out of memory."""
        if self.cls is None:
            raise RuntimeError("this model has no cloze head (built with cloze=False)")
        picked = h[targets != IGNORE_INDEX]  # (N, C)
        return self.cls.predictions(picked, self.bert.embeddings.word_embeddings.weight)

    def predict(self, input_ids, attention_mask=None, prefix=None):
        """Label id per piece, (B, T). Meaningful at first pieces only; the rest are 'X'."""
        return self(input_ids, attention_mask, prefix).argmax(-1)


def ner_loss(logits, labels, reduction="mean"):
    """Cross-entropy over labelled first pieces; 'X' pieces and padding carry IGNORE_INDEX.
    reduction="sum" is what the training loop divides by the labelled pieces of a whole batch
    (a "mean" over no labelled piece at all would be 0/0 = NaN)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def cloze_loss(logits, targets):
    """Cross-entropy of the masked pieces; `logits` come from `cloze_logits` (masked rows only)."""
    picked = targets[targets != IGNORE_INDEX]
    if picked.numel() == 0:  # nothing masked in this batch (e.g. PC found no entity)
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), picked)
