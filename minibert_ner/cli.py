"""The command line of `python -m minibert_ner.train`: options explained for a student, turned into
TrainConfig objects (one per seed). Kept apart from train.py so the loop reads top to bottom."""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
AUX_CHOICES = ("LI", "CL", "PC", "CL+LI", "PC+LI")

DESCRIPTION = """\
Fine-tune BERT for named-entity recognition on one or many languages at once
(Moon et al., "Towards Lingua Franca Named Entity Recognition with BERT").

With no arguments: a complete demonstration on the small synthetic sample in data/sample
(en, de, es, nl, ru), training a small randomly initialised BERT on the CPU in about two minutes.

Data files are CoNLL-2002/2003 or WikiANN files, given as LANG=PATH (or just PATH when the
language shows in the name, e.g. eng.train, ned.testa, train-ru.tsv). Tags are converted to
IOB1, the paper's scheme. Each word's tag goes on its first word piece; the other pieces get the
tag 'X', which is never predicted or scored. Sentences longer than --max-len pieces are cut into
windows overlapping by --overlap pieces, so no word is dropped.
"""

EXAMPLES = """\
examples:
  # the paper's multilingual model (BERT-ML) on CoNLL, with mBERT in ./mbert
  python -m minibert_ner.train --model mbert --train eng.train esp.train ned.train de=deu.train \\
      --dev eng.testa esp.testa ned.testa deu.testa --test eng.testb esp.testb ned.testb deu.testb
  # zero-shot to German with the lowest 3 layers frozen (the paper's #frz = 3)
  python -m minibert_ner.train --model mbert --train ... --dev ... --target de --frz 3
  # + the language-ID and cloze auxiliary tasks on unlabeled German text
  python -m minibert_ner.train ... --target de --aux CL+LI --unlabeled de=german.txt
  # three seeds, reporting mean ± sd
  python -m minibert_ner.train ... --seed 1 2 3
"""


def parse_files(items, what):
    """["en=path", "path/eng.train"] -> [(lang, path)]; the language from the name if not given."""
    from .data import infer_lang
    out = []
    for item in items or []:
        lang, sep, path = item.partition("=")
        if not sep:
            path, lang = item, infer_lang(item)
        if not Path(path).is_file():
            raise SystemExit(f"error: --{what} file {path} does not exist")
        out.append((lang, path))
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minibert_ner.train", description=DESCRIPTION,
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="", help="folder with config.json, model.safetensors and vocab.txt "
                   "(e.g. bert-base-multilingual-cased). Omitted: a small random BERT (demo only)")
    g.add_argument("--train", nargs="+", metavar="[LANG=]FILE", help="training files, one or more languages; "
                   "their sentences are shuffled together every epoch (multilingual training)")
    g.add_argument("--dev", nargs="+", metavar="[LANG=]FILE", help="development files: scored after "
                   "every epoch; the best epoch's model is kept")
    g.add_argument("--test", nargs="+", metavar="[LANG=]FILE", help="test files: scored once, with the best model")
    g.add_argument("--target", nargs="+", default=[], metavar="LANG", help="zero-shot target language(s): "
                   "their training files are left out, and the model is selected on their dev F1")
    g.add_argument("--unlabeled", nargs="+", metavar="LANG=FILE", help="raw target-language text, one "
                   "sentence per line, for the auxiliary tasks (--aux)")
    g.add_argument("--lowercase", action="store_true", help="lowercase and strip accents: only for "
                   "uncased vocabularies (read from tokenizer_config.json when present)")
    g.add_argument("--encoding", default="utf-8", help="encoding of the data files (the original "
                   "CoNLL-2002 files are latin-1)")
    g.add_argument("--max-sentences", type=int, default=0, help="use only the first N sentences of each "
                   "training file (quick experiments); 0 = all")
    g = p.add_argument_group("the paper's recipe (defaults are the paper's)")
    g.add_argument("--frz", type=int, default=-1, help="#frz: -1 train everything; 0 freeze the embeddings; "
                   "k freeze the embeddings and the lowest k layers (their dropout is off too)")
    g.add_argument("--aux", choices=AUX_CHOICES, help="auxiliary task on --unlabeled text, summed with the "
                   "NER loss: LI language ID on [CLS]; CL cloze (mask 15%% of pieces, predict them); PC "
                   "predictive cloze (mask the entities the current model predicts, predict them)")
    g.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of AdamW (default 5e-5)")
    g.add_argument("--batch-size", type=int, default=32, help="windows per optimizer step (default 32)")
    g.add_argument("--epochs", type=int, default=20, help="passes over the training data (default 20)")
    g.add_argument("--max-len", type=int, default=64, help="most pieces per window, [CLS] and [SEP] "
                   "included (default 64)")
    g.add_argument("--overlap", type=int, default=8, help="pieces shared by consecutive windows of a long "
                   "sentence (default 8)")
    g.add_argument("--mask-p", type=float, default=0.15, help="cloze masking probability (default 0.15)")
    g = p.add_argument_group("optimisation details")
    g.add_argument("--grad-accum", type=int, default=1, help="split each batch into this many "
                   "micro-batches (same result, less memory)")
    g.add_argument("--warmup", type=float, default=0.1, help="fraction of steps during which the lr rises "
                   "linearly from 0; it then falls linearly to 0 (default 0.1)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay, not applied "
                   "to biases and LayerNorm (default 0.01)")
    g.add_argument("--clip", type=float, default=1.0, help="clip the gradient norm to this (default 1.0)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bf16 (or fp16 + loss scaling) on a GPU, fp32 on CPU; bf16 also works on CPU")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (default 0: PyTorch's "
                   "choice, one per core); fewer leaves cores to other jobs on a shared machine")
    g.add_argument("--dropout", type=float, default=-1.0, help="override the model's dropout probability "
                   "(e.g. 0 to compare runs exactly); default: the checkpoint's (0.1 for BERT)")
    g.add_argument("--bucket", action="store_true", help="length-bucketed batches instead of random ones: "
                   "each batch holds windows of similar length (languages stay mixed). ~20%% faster "
                   "on CPU, but ~1 F1 lower after one CoNLL epoch; random batches run packed anyway")
    g.add_argument("--no-cache", action="store_true", help="with --frz >= 0, do NOT reuse the frozen "
                   "layers' output across epochs (the cache changes nothing but speed)")
    g.add_argument("--cache-gb", type=float, default=4.0, help="memory budget of that cache (default 4)")
    g = p.add_argument_group("runs")
    g.add_argument("--seed", type=int, nargs="+", default=[1], help="one or more seeds; with several, each "
                   "run goes to OUT/seed-N and the mean ± sd is reported")
    g.add_argument("--out", default="runs/demo", help="run folder: best/ and last/ checkpoints, log.jsonl, "
                   "dev_f1.svg (default runs/demo)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    g.add_argument("--stop-after", type=int, default=0, help="stop after this many epochs (resume later)")
    g.add_argument("--quiet", action="store_true", help="print only the final results")
    return p


def configs_from_argv(argv, config_class):
    """Parse the command line into one config per seed."""
    a = build_parser().parse_args(argv)
    demo = not a.train
    if demo:  # the bundled sample, every language: train, dev and test
        if not SAMPLE.is_dir():
            raise SystemExit(f"error: no --train given and the demo sample {SAMPLE} is missing")
        langs = sorted(p.name for p in SAMPLE.iterdir() if (p / "train.txt").exists())
        a.train = [f"{l}={SAMPLE / l / 'train.txt'}" for l in langs]
        a.dev = a.dev or [f"{l}={SAMPLE / l / 'dev.txt'}" for l in langs]
        a.test = a.test or [f"{l}={SAMPLE / l / 'test.txt'}" for l in langs]
        if a.aux and not a.unlabeled:
            a.unlabeled = [f"{l}={SAMPLE / 'unlabeled' / (l + '.txt')}" for l in (a.target or langs)]
    train = parse_files(a.train, "train")
    left_out = [lang for lang, _ in train if lang in a.target]
    train = [(lang, p) for lang, p in train if lang not in a.target]  # zero-shot: never train on the target
    if not train:
        raise SystemExit("error: --target leaves no training language")
    if a.aux and not a.unlabeled:
        raise SystemExit("error: --aux needs --unlabeled LANG=FILE (raw target-language text)")
    cfg = config_class(
        model=a.model, train=train, dev=parse_files(a.dev, "dev"), test=parse_files(a.test, "test"),
        unlabeled=parse_files(a.unlabeled, "unlabeled"), target=a.target,
        aux=a.aux.split("+") if a.aux else [], frz=a.frz, lr=a.lr, batch_size=a.batch_size,
        grad_accum=a.grad_accum, epochs=a.epochs, max_len=a.max_len, overlap=a.overlap, mask_p=a.mask_p,
        warmup=a.warmup, weight_decay=a.weight_decay, clip=a.clip, precision=a.precision, device=a.device,
        out=a.out, lowercase=a.lowercase, encoding=a.encoding, bucket=a.bucket,
        max_sentences=a.max_sentences, stop_after=a.stop_after, cache_frozen=not a.no_cache, cache_gb=a.cache_gb,
        dropout=a.dropout, threads=a.threads, resume=a.resume, quiet=a.quiet)
    if a.batch_size % a.grad_accum:
        raise SystemExit(f"error: --batch-size {a.batch_size} is not a multiple of --grad-accum {a.grad_accum}")
    if demo and not a.model:
        # A random BERT learns nothing at the paper's lr in a few epochs: the demo uses its own.
        given = {x.split("=")[0] for x in (sys.argv[1:] if argv is None else argv)}
        cfg.lr = cfg.lr if "--lr" in given else 1e-3
        cfg.epochs = cfg.epochs if "--epochs" in given else 8
    if left_out and not cfg.quiet:
        print(f"zero-shot: leaving out the training files of {', '.join(left_out)}", file=sys.stderr)
    seeds = a.seed
    if len(seeds) == 1:
        return [replace(cfg, seed=seeds[0])]
    return [replace(cfg, seed=s, out=str(Path(a.out) / f"seed-{s}")) for s in seeds]

