"""Tag text with a trained model: from Python, or `python -m minibert_ner.predict --model RUN ...`.

    import minibert_ner
    tagger = minibert_ner.load("runs/demo")            # a run folder, a checkpoint folder or a hub id
    tagger("Angela Merkel besuchte Paris.")
    # [Entity(type='PER', text='Angela Merkel', start=0, end=13, word_start=0, word_end=2, score=0.97),
    #  Entity(type='LOC', text='Paris', start=23, end=28, word_start=3, word_end=4, score=0.99)]

Text, in any script, is split into words exactly as BERT's basic tokenizer splits (whitespace,
punctuation, CJK characters); long texts go through the same overlapping windows as training, so
every word gets exactly one tag; entities are decoded from the IOB tags with conlleval's chunk
rules. An entity's `text` and character offsets are those of the input as written (also for
uncased models, which see lowercased words); its score is the mean probability of its words'
tags. The command line also tags CoNLL / WikiANN files (--conll), writing conlleval's input
format for `python -m minibert_ner.tools.evaluate`, and prints JSON lines with --json.

Training imports `predict_windows` and `evaluate` from here: inference lives in one place.
Left out: sentence splitting of long documents (one line = one input).
"""
import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import ConfigError, check_device
from .data import DataError, Sentence, read_conll, write_conll
from .device import resolve_precision, set_threads
from .speed import keep_freed_memory
from .distributed import gather_dicts, rank_and_world
from .runs import load_ner_model
from .scoring import get_chunks, score
from .windows import Windowing, batch_indices, collate, encode_sentences, merge_predictions


@dataclass
class Inference:
    """How windows are run to predict: the padding id, the device and precision, windows per forward
    pass, and (training with #frz >= 0) the PrefixCache that runs the frozen layers once per window."""
    pad_id: int
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    batch_size: int = 32   # as train evaluates (config.eval_batch_size): the same batches, the same counts
    cache: object = None


@torch.no_grad()
def predict_windows(model, windows, how, name="eval", scores=False, progress=None):
    """Label id per position for every window, in the windows' order (with scores=True: pairs of
    (label id, its probability)). Under torchrun each process predicts every world_size-th window
    and the predictions are gathered, so each is made once. `how`: an Inference; with its cache the
    frozen part runs once per window and `name`. `progress(done, total)`: called after each batch
    with the windows predicted so far."""
    model.eval()
    rank, world = rank_and_world()
    mine = list(range(rank, len(windows), world))
    out = {}
    order = batch_indices([len(windows[i].input_ids) for i in mine], how.batch_size, shuffle=False)
    for index in order:  # sorted by length: little padding
        index = [mine[j] for j in index]
        batch = collate([windows[i] for i in index], how.pad_id, index).to(how.device)
        with torch.autocast(how.device.type, dtype=how.dtype, enabled=how.dtype != torch.float32):
            prefix = how.cache.prefix(model, batch, name) if how.cache else None
            logits = model(batch.input_ids, batch.attention_mask, prefix).float()  # (B, T, labels)
        probability, label = logits.softmax(-1).max(-1)  # (B, T) each
        for b, i in enumerate(index):
            n = len(windows[i].input_ids)
            out[i] = list(zip(label[b, :n].tolist(), probability[b, :n].tolist())) if scores \
                else label[b, :n].tolist()
        if progress is not None:
            progress(len(out), len(mine))
    out = gather_dicts(out)
    return [out[i] for i in range(len(windows))]


def evaluate(model, sentences, windows, how, name="eval"):
    """Tag every word of every sentence (one tag per word, windows merged) and score by conlleval."""
    preds = predict_windows(model, windows, how, name)
    tags = [[model.labels[i] for i in s] for s in merge_predictions(windows, preds, sentences)]
    return score([s.tags for s in sentences], tags), tags


@dataclass
class Entity:
    """One entity found in a text. Offsets are end-exclusive, as Python slices: text[start:end]."""
    type: str          # PER, LOC, ...
    text: str          # as written in the input
    start: int         # character offsets in the input (None if normalisation hid them)
    end: int
    word_start: int    # word offsets (the words of WordPieceTokenizer.basic_tokenize)
    word_end: int
    score: float       # mean probability of the entity's words' tags (read at their first pieces)


class Tagger:
    """A trained model ready to tag raw text or pre-split words; see the module docstring."""

    def __init__(self, model, tok, how, max_len=64, overlap=8, label_piece="first"):
        """how: an Inference (device, precision, batch size); max_len, overlap and label_piece as the
        model was trained (train's --max-len, --overlap, --label-piece)."""
        self.model, self.tok, self.how = model.to(how.device).eval(), tok, how
        self.max_len, self.overlap = max_len, overlap
        self.progress = None  # e.g. a ProgressLine: told after every batch
        # the piece each word's tag is read from, as the model was trained (train --label-piece)
        self.skip_id = tok.metaspace_id if label_piece == "content" else None

    def tag_words(self, sentences):
        """(tags, probabilities) per word for every list of words."""
        if not isinstance(sentences, (list, tuple)) or not all(
                isinstance(words, (list, tuple)) and all(isinstance(w, str) and w for w in words) for words in sentences):
            raise TypeError(f"tag_words expects a list of sentences, each a list of words (non-empty str), "
                            f"not {_describe(sentences)}")
        unlabeled = [Sentence(list(words), [], "xx") for words in sentences]
        windows = encode_sentences(unlabeled, self.tok, {}, {"xx": 0}, Windowing(self.max_len, self.overlap, self.skip_id))
        preds = predict_windows(self.model, windows, self.how, scores=True, progress=self.progress)
        merged = merge_predictions(windows, preds, unlabeled)
        return ([[self.model.labels[label] for label, _ in row] for row in merged],
                [[p for _, p in row] for row in merged])

    def __call__(self, text):
        """The entities of a text (a str), or of each text (a list of str)."""
        if not isinstance(text, str) and not (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)):
            hint = " (pre-split words go to tag_words)" if isinstance(text, (list, tuple)) and text and \
                all(isinstance(t, (list, tuple)) for t in text) else ""
            raise TypeError(f"a tagger takes a text (str) or a list of texts, not {_describe(text)}{hint}")
        texts = [text] if isinstance(text, str) else list(text)
        split = [self.tok.words_and_spans(t) for t in texts]
        tags, probabilities = self.tag_words([words for words, _ in split])
        found = [entities(t, words, spans, tg, pr) for t, (words, spans), tg, pr in zip(texts, split, tags, probabilities)]
        return found[0] if isinstance(text, str) else found


def _describe(value):
    """What a wrong argument is, briefly: `list holding NoneType`, `bytes`, ..."""
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value})
        return f"a {type(value).__name__} holding {', '.join(kinds) or 'nothing'}"
    return type(value).__name__


def entities(text, words, spans, tags, probabilities):
    """Entity objects from one text's per-word tags (conlleval's chunks)."""
    found = []
    for etype, a, b in get_chunks(tags):
        start = spans[a][0] if spans[a] else None
        end = spans[b - 1][1] if spans[b - 1] else None
        shown = text[start:end] if start is not None and end is not None else " ".join(words[a:b])
        found.append(Entity(etype, shown, start, end, a, b, round(sum(probabilities[a:b]) / (b - a), 4)))
    return found


def load(run_or_id, device="cpu", precision=None):
    """A Tagger from a run folder (its best/), a checkpoint folder, or a hub id of such a checkpoint.
    The windows are the run's own (its max_len and overlap, read from the checkpoint's config), and
    so is the precision unless given ('auto' resolves as in training: bf16 where native)."""
    from .hub import model_folder
    folder = Path(run_or_id)
    if not folder.exists():  # a hub id: downloaded once into the Hugging Face cache
        folder = model_folder(str(run_or_id))
    model, tok = load_ner_model(folder, device)
    trained = json.loads(((folder / "best" if (folder / "best").is_dir() else folder) / "config.json")
                         .read_text(encoding="utf-8")).get("minibert_ner", {}).get("train_config", {})
    # the precision the run evaluated in ('auto' resolved here as train resolved it), so that predict +
    # evaluate give the counts of the run's own test report
    device = torch.device(device)
    _, dtype = resolve_precision(precision or trained.get("precision", "fp32"), device)
    return Tagger(model, tok, Inference(tok.pad_token_id, device, dtype), trained.get("max_len", 64),
                  trained.get("overlap", 8), trained.get("label_piece", "first"))


# ---------------------------------------------------------------------------------------------
# the command line


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minibert_ner.predict",
        description="Find named entities with a model trained by `python -m minibert_ner.train`.",
        epilog="examples:\n"
               "  python -m minibert_ner.predict --model runs/demo \"Angela Merkel besuchte Paris .\"\n"
               "  echo 'Ivan Petrov lives in Moscow .' | python -m minibert_ner.predict --model runs/demo --json\n"
               "  python -m minibert_ner.predict --model runs/demo --conll data/sample/de/test.txt --out pred.txt\n"
               "  python -m minibert_ner.tools.evaluate pred.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a run folder (its best/ checkpoint is used), a checkpoint "
                   "folder, or a hub id of one")
    p.add_argument("text", nargs="*", help="texts to tag; none: read one text per line from stdin")
    p.add_argument("--json", action="store_true", help="one JSON object per text: {text, entities: [{type, "
                   "text, start, end, word_start, word_end, score}]}, offsets end-exclusive")
    p.add_argument("--conll", help="tag a CoNLL/WikiANN file instead (or a file of one token per line, "
                   "untagged); writes `token gold predicted` lines (`token predicted` for untagged input)")
    p.add_argument("--out", help="with --conll: output file (default: stdout)")
    p.add_argument("--encoding", default="utf-8", help="encoding of the --conll file")
    p.add_argument("--max-len", type=int, help="most pieces per window (default: the run's, 64)")
    p.add_argument("--overlap", type=int, help="pieces shared by consecutive windows (default: the run's, 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="default: the run's own, so "
                   "that predict + evaluate give the counts of its test report (auto: bf16 where native)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32, the "
                   "training run's evaluation batch)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: the cores idle right now; "
                   "PyTorch's one per core stalls when another process holds one)")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error (or MINIBERT_DEBUG=1)")
    return p


def read_stdin_lines():
    """Non-empty lines of stdin, decoded as UTF-8 line by line (an invalid byte names its line)."""
    if sys.stdin.isatty():
        print("reading texts from the terminal, one per line; end with Ctrl-D", file=sys.stderr)
    lines = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise DataError(f"<stdin>:{number}: not valid UTF-8 (byte {error.start}); convert the text to "
                            f"UTF-8 first, e.g. with iconv") from None
        if line.strip():
            lines.append(line)
    return lines


class ProgressLine:
    """A line on stderr every ~10 s while a long input is tagged: windows done, rate, ETA."""

    def __init__(self, what):
        self.what, self.start, self.last = what, time.time(), time.time()

    def __call__(self, done, total):
        now = time.time()
        if now - self.last >= 10 or (done == total and now - self.start >= 10):
            self.last, rate = now, done / max(now - self.start, 1e-9)
            print(f"{self.what}: {done}/{total} windows, {rate:.0f}/s, ETA {(total - done) / max(rate, 1e-9):.0f} s",
                  file=sys.stderr, flush=True)


def tag(a):
    """The command: load the model, tag what was given, print it."""
    if a.batch_size < 1 or a.threads < 0:
        raise ConfigError(f"--batch-size ({a.batch_size}) must be at least 1 and --threads ({a.threads}) not negative")
    check_device(a.device)
    set_threads(a.threads)
    keep_freed_memory()
    tagger = load(a.model, a.device, a.precision)
    tagger.max_len, tagger.overlap = a.max_len or tagger.max_len, a.overlap or tagger.overlap
    if not 0 <= tagger.overlap < tagger.max_len - 2 or tagger.max_len > tagger.model.bert.config.max_position_embeddings:
        raise ConfigError(f"--max-len {tagger.max_len} / --overlap {tagger.overlap}: a window holds [CLS], [SEP] and at "
                          f"least one new piece, and at most the model's {tagger.model.bert.config.max_position_embeddings} "
                          f"positions")
    tagger.how.batch_size = a.batch_size
    if a.conll:
        sentences = read_conll(a.conll, lang="xx", encoding=a.encoding, untagged=True)
        tagger.progress = ProgressLine(a.conll)
        tags, _ = tagger.tag_words([s.words for s in sentences])
        if a.out:
            write_conll(a.out, sentences, tags)
            print(f"wrote {len(sentences)} sentences to {a.out}", file=sys.stderr)
        else:
            for s, t in zip(sentences, tags):
                cols = [s.words] + ([s.tags] if s.tags else []) + [t]
                print("\n".join(" ".join(row) for row in zip(*cols)) + "\n")
        return 0
    texts = a.text or read_stdin_lines()
    for text, found in zip(texts, tagger(texts)):
        if a.json:
            print(json.dumps(dict(text=text, entities=[asdict(e) for e in found]), ensure_ascii=False))
            continue
        print(text)
        for e in found or []:
            where = f"chars {e.start}-{e.end}" if e.start is not None else "chars ?"
            print(f"  {e.type:<5} {e.text:<30} words {e.word_start}-{e.word_end}, {where}, score {e.score:.2f}")
        if not found:
            print("  (no entities)")
    return 0


def main(argv=None):
    from .cli import run_command
    args = build_parser().parse_args(argv)
    return run_command(lambda: tag(args), args.debug)


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module; call the package's copy,
    # whose classes are the ones the rest of the library knows
    import minibert_ner.predict
    sys.exit(minibert_ner.predict.main())
