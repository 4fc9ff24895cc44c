"""minibert_ner: multilingual BERT NER from scratch (Moon et al., "Towards Lingua Franca NER with BERT").

Modules, in the order a student reads them:
  tokenizer         WordPiece from scratch + a fast path through `tokenizers`
  model             BertConfig and the BERT encoder
  safetensors_file  the safetensors format, validated before a byte is read
  weights           checkpoints in and out (mBERT / Hugging Face key layout)
  data              CoNLL / WikiANN readers, IOB1/IOB2 tag schemes, label lists
  windows           first-piece labels, 64-piece windows with overlap, batching, cloze masks
  scoring           conlleval-exact chunk F1
  heads             NER / language-ID / cloze heads and the multitask model with layer freezing
  config            TrainConfig: every setting of a run
  train             the hand-written mixed-precision training loop (`python -m minibert_ner.train`)
  runs              a run's folder: checkpoints, crash-safe swaps, the log
  files             the one atomic writer every file goes through
  predict           tagging raw text or CoNLL files with a trained model; minibert_ner.load
Also in the core: cli (one error policy for every command), hub (model ids), device, distributed,
and speed (what makes it fast, kept apart so the files above read like the paper).
minibert_ner/tools/ holds the commands built around it (datasets, evaluate, pretrain, experiments,
report, bench, ...); the core never imports them.

Nothing is imported here eagerly: `import minibert_ner` does no work. `minibert_ner.load(RUN)` gives a
tagger for raw text (see predict.py).
"""

__version__ = "0.1.0"


def load(run_or_id, device="cpu"):
    """A ready-to-use tagger: `minibert_ner.load("runs/demo")("Angela Merkel besuchte Paris.")` returns the
    entities, each with its type, text as written, character and word offsets and a score (predict.Tagger).
    `run_or_id`: a run folder (its best model), a checkpoint folder, or a hub id of such a checkpoint."""
    from .predict import load as load_tagger  # imported on first use, so `import minibert_ner` stays free
    return load_tagger(run_or_id, device)
