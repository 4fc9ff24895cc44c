"""`python -m minibert_ner.tools.tokenize`: what a tokenizer makes of a text, and its fertility on files.

Either tokenizer of the core: a WordPiece vocab.txt (`--vocab`, default mBERT's in the shared data)
or a model folder (`--model`: WordPiece or SentencePiece Unigram, as train reads it). `--steps` prints
each step of the tokenizer (its `steps` method); `--fertility FILE...` the pieces per word of CoNLL or
WikiANN files (paper, Table 2: a language the vocabulary covers poorly has its words cut into many
pieces).
"""
import argparse
import sys
from pathlib import Path

from ..cli import run_command
from ..data import mbert_vocab_path, read_conll
from ..tokenizer import WordPieceTokenizer
from ..unigram import load_tokenizer


def measure_fertility(tokenizer, sentences, label="", batch_size=2000):
    """(words, pieces) over sentences (lists of words), either tokenizer; progress on stderr for big files."""
    n_words = n_pieces = 0
    for start in range(0, len(sentences), batch_size):
        for ids, _ in tokenizer.encode_batch_words(sentences[start:start + batch_size]):
            n_pieces += len(ids)
        n_words += sum(len(words) for words in sentences[start:start + batch_size])
        if len(sentences) > batch_size:
            done = min(start + batch_size, len(sentences))
            print(f"\r{label}: {done}/{len(sentences)} sentences", end="", file=sys.stderr, flush=True)
    if len(sentences) > batch_size:
        print(file=sys.stderr)
    return n_words, n_pieces


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minibert_ner.tools.tokenize",
        description="Split text into word pieces (WordPiece or SentencePiece Unigram), or measure fertility:\n"
                    "the average number of pieces per word (paper, Table 2). High fertility means the\n"
                    "vocabulary covers a language poorly, and its words get chopped into fragments.",
        epilog='examples:\n  python -m minibert_ner.tools.tokenize "Köln liegt am Rhein."\n'
               '  python -m minibert_ner.tools.tokenize --steps "Rheinufer-Café 中文"\n'
               '  python -m minibert_ner.tools.tokenize --model models/e5-small --steps "Ｋöln  liegt."\n'
               "  python -m minibert_ner.tools.tokenize --fertility ../shared/data/wikiann/ar/dev-ar.tsv\n"
               "CoNLL/WikiANN files: the first column of each non-blank, non -DOCSTART- line is a word.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", help="text to tokenize; its pieces are printed on one line")
    p.add_argument("--fertility", nargs="+", metavar="FILE", help="CoNLL or WikiANN files to measure")
    p.add_argument("--vocab", type=Path, default=None, help=f"a WordPiece vocab.txt (default: {mbert_vocab_path()} "
                   "if it exists)")
    p.add_argument("--model", help="a model folder instead: its tokenizer, WordPiece or Unigram, as train reads it")
    p.add_argument("--lowercase", action="store_true", help="lowercase and strip accents (uncased vocabs)")
    p.add_argument("--steps", action="store_true", help="with TEXT: print the output of every step")
    return p


def main(argv=None):
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.text is None and not a.fertility:
        parser.error("give TEXT to tokenize or --fertility FILE...")
    if a.model is None and a.vocab is None and not mbert_vocab_path().is_file():
        parser.error(f"no vocab at {mbert_vocab_path()}; pass --vocab PATH/vocab.txt or --model FOLDER")
    return run_command(lambda: tokenize(a))


def tokenize(a):
    tok = load_tokenizer(a.model, a.lowercase) if a.model else \
        WordPieceTokenizer.from_file(a.vocab or mbert_vocab_path(), lowercase=a.lowercase)
    if a.text is not None and a.steps:
        for name, value in tok.steps(a.text):
            print(f"{name:<28} {value!r}")
    elif a.text is not None:
        print(" ".join(tok.tokenize(a.text)))
    if a.fertility:
        files = {path: [s.words for s in read_conll(path, lang="xx")] for path in a.fertility}  # a bad file: before any output
        print(f"{'file':<40} {'words':>10} {'pieces':>10} {'pieces/word':>12}")
        for path, sentences in files.items():
            n_words, n_pieces = measure_fertility(tok, sentences, label=str(path))
            ratio = n_pieces / n_words if n_words else float("nan")
            print(f"{str(path):<40} {n_words:>10} {n_pieces:>10} {ratio:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
