"""Tag text with a trained model: `python -m minibert_ner.predict --model RUN_DIR ...`.

Three inputs:
  - text given as arguments, or read from stdin (one text per line), in any script: it is split
    into words exactly as BERT's basic tokenizer splits (whitespace, punctuation, CJK characters);
  - a CoNLL / WikiANN file (--conll FILE): the output is conlleval's input format
    (`token gold predicted`), so `python -m minibert_ner.evaluate` can score it.
Long texts go through the same 64-piece overlapping windows as training; every word gets exactly
one tag. Entities are decoded from the IOB tags with conlleval's chunk rules and printed with their
type and position. Left out: sentence splitting of long documents (one line = one input).
"""
import argparse
import sys

import torch

from .data import Sentence, read_conll, write_conll
from .distributed import gather_dicts, rank_and_world
from .runs import load_ner_model
from .scoring import get_chunks, score
from .windows import batch_indices, collate, encode_sentences, merge_predictions


@torch.no_grad()
def predict_windows(model, windows, pad_id, device, dtype, batch_size, cache=None, name="eval"):
    """Label id per position for every window, in the windows' order. Under torchrun each process
    predicts every world_size-th window and the predictions are gathered, so each is made once.
    `cache`: a PrefixCache; with #frz >= 0 the frozen part then runs once per window and `name`."""
    model.eval()
    rank, world = rank_and_world()
    mine = list(range(rank, len(windows), world))
    out = {}
    order = batch_indices([len(windows[i].input_ids) for i in mine], batch_size, shuffle=False)
    for index in order:  # sorted by length: little padding
        index = [mine[j] for j in index]
        batch = collate([windows[i] for i in index], pad_id, index).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            prefix = cache.prefix(model, batch, name) if cache else None
            pred = model.predict(batch.input_ids, batch.attention_mask, prefix).cpu()
        for row, i in zip(pred, index):
            out[i] = row[: len(windows[i].input_ids)].tolist()
    out = gather_dicts(out)
    return [out[i] for i in range(len(windows))]


def evaluate(model, sentences, windows, pad_id, device, dtype, batch_size=128, cache=None, name="eval"):
    """Tag every word of every sentence (one tag per word, windows merged) and score by conlleval."""
    preds = predict_windows(model, windows, pad_id, device, dtype, batch_size, cache, name)
    tags = [[model.labels[i] for i in s] for s in merge_predictions(windows, preds, sentences)]
    return score([s.tags for s in sentences], tags), tags


def tag_sentences(model, tok, sentences, max_len=64, overlap=8, device="cpu", batch_size=64):
    """One tag per word for every sentence (sentences need .words and .lang; tags are ignored)."""
    unlabeled = [Sentence(s.words, [], "xx", s.source, s.line) for s in sentences]
    windows = encode_sentences(unlabeled, tok, {}, {"xx": 0}, max_len, overlap)
    preds = predict_windows(model, windows, tok.pad_token_id, torch.device(device), torch.float32, batch_size)
    return [[model.labels[i] for i in row] for row in merge_predictions(windows, preds, unlabeled)]


def char_offsets(text, words):
    """Where each word starts in the original text (None where cleaning changed the characters)."""
    offsets, pos = [], 0
    for w in words:
        at = text.find(w, pos)
        offsets.append(at if at >= 0 else None)
        pos = at + len(w) if at >= 0 else pos
    return offsets


def describe_entities(text, words, tags):
    """Lines like `PER   Angela Merkel   words 0-1, chars 0-13`."""
    offsets = char_offsets(text, words)
    lines = []
    for etype, start, end in get_chunks(tags):
        span = " ".join(words[start:end])
        where = f"words {start}-{end - 1}"
        a, b = offsets[start], offsets[end - 1]
        if a is not None and b is not None:
            where += f", chars {a}-{b + len(words[end - 1])}"
        lines.append(f"  {etype:<5} {span:<30} {where}")
    return lines or ["  (no entities)"]


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minibert_ner.predict",
        description="Find named entities with a model trained by `python -m minibert_ner.train`.",
        epilog="examples:\n"
               "  python -m minibert_ner.predict --model runs/demo \"Angela Merkel besuchte Paris .\"\n"
               "  echo 'Ivan Petrov lives in Moscow .' | python -m minibert_ner.predict --model runs/demo\n"
               "  python -m minibert_ner.predict --model runs/demo --conll data/sample/de/test.txt --out pred.txt\n"
               "  python -m minibert_ner.evaluate pred.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a run folder (its best/ checkpoint is used) or a checkpoint folder")
    p.add_argument("text", nargs="*", help="texts to tag; none: read one text per line from stdin")
    p.add_argument("--conll", help="tag a CoNLL/WikiANN file instead; writes `token gold predicted` lines")
    p.add_argument("--out", help="with --conll: output file (default: stdout)")
    p.add_argument("--encoding", default="utf-8", help="encoding of the --conll file")
    p.add_argument("--max-len", type=int, default=64, help="most pieces per window (default 64, as in training)")
    p.add_argument("--overlap", type=int, default=8, help="pieces shared by consecutive windows (default 8)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error (or MINIBERT_DEBUG=1)")
    return p


def main(argv=None):
    from .cli import run_command
    args = build_parser().parse_args(argv)
    return run_command(lambda: tag(args), args.debug)


def tag(a):
    """The command: load the model, tag what was given, print it."""
    model, tok = load_ner_model(a.model, a.device)
    if a.conll:
        sentences = read_conll(a.conll, lang="xx", encoding=a.encoding)
        tags = tag_sentences(model, tok, sentences, a.max_len, a.overlap, a.device)
        if a.out:
            write_conll(a.out, sentences, tags)
            print(f"wrote {len(sentences)} sentences to {a.out}", file=sys.stderr)
        else:
            for s, t in zip(sentences, tags):
                cols = [s.words] + ([s.tags] if s.tags else []) + [t]
                print("\n".join(" ".join(row) for row in zip(*cols)) + "\n")
        return 0
    texts = a.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    sentences = [Sentence(tok.basic_tokenize(t), [], "xx") for t in texts]
    for text, s, tags in zip(texts, sentences, tag_sentences(model, tok, sentences, a.max_len, a.overlap, a.device)):
        print(text)
        print("\n".join(describe_entities(text, s.words, tags)))
    return 0


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module; call the package's copy,
    # whose classes (TrainConfig, ConfigError, ...) are the ones the rest of the library knows
    import minibert_ner.predict
    sys.exit(minibert_ner.predict.main())
