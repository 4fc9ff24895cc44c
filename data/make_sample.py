"""Generate the small synthetic multilingual NER sample in data/sample/ (en, de, es, nl, ru).

What it does: fills hand-written sentence templates with names drawn from small per-language
gazetteers (PER, LOC, ORG, MISC), deterministically from a seed, and writes CoNLL 2-column files
(`token TAG`, IOB1 tags, the paper's scheme) plus raw unlabelled text for the cloze tasks:

    data/sample/<lang>/{train,dev,test}.txt     400 / 100 / 100 sentences
    data/sample/unlabeled/<lang>.txt            200 raw sentences, one per line

What it leaves out: any real text. The sample exists so the demo, the tutorials and the tests run
in minutes on a laptop without the licensed corpora; an F1 score on it says nothing about real NER.

Each gazetteer has names used everywhere and names held out of train, which dev/test draw half the
time, so the dev/test score is not pure memorisation. A few sentences are 60-90 words (more than 64
word pieces, to exercise the windows), and "results" lines put two club names side by side, which
is where IOB1 writes B-.

Usage: python data/make_sample.py [--out DIR] [--seed N]   (re-running gives byte-identical files)
"""
import argparse
import json
import random
from pathlib import Path

SPLITS = {"train": 400, "dev": 100, "test": 100}
N_UNLABELED = 200
LONG_FRACTION = 0.04     # share of 60-90 word sentences
RESULTS_FRACTION = 0.08  # share of "ORG ORG 2 1" lines: adjacent same-type entities

# Per language, in sample_words.json (data, not code): the gazetteers PER (first and last names), LOC, ORG,
# CLUB (an ORG) and MISC, each a pair [names for all splits, names held out of train]; an entry is a string
# or a list of inflected forms ("{LOC.1}" in a template takes form 1, e.g. the Russian prepositional
# "в Москве"); the weekday names, the joiners of long sentences' clauses and the sentence templates.
LANGUAGES = json.loads((Path(__file__).parent / "sample_words.json").read_text(encoding="utf-8"))


def pick(rng, category, held_out_share, used):
    """A name from (everyone, held_out), held-out ones only for dev/test; never twice in a sentence."""
    common, held_out = category
    pool = held_out if rng.random() < held_out_share else common
    choice = rng.choice(pool)
    while choice in used:  # "Chelsea Chelsea 2 1" would read as nonsense
        choice = rng.choice(pool)
    used.append(choice)
    return choice


def fill(rng, lang, template, held_out_share):
    """One template filled in: a list of (text, entity type or "") pairs, entities still whole."""
    spec, out, used = LANGUAGES[lang], [], []
    for slot in template.split():
        name, _, form = slot.strip("{}").partition(".") if slot.startswith("{") else (slot, "", "")
        form = int(form or 0)
        if name == "PER":
            full = pick(rng, spec["last"], held_out_share, used)
            if rng.random() < 0.6:  # "Peter Smith" more often than "Smith"
                full = pick(rng, spec["first"], held_out_share, used) + " " + full
            out.append((full, "PER"))
        elif name in ("LOC", "ORG", "MISC", "CLUB"):  # a CLUB is an ORG drawn from sports clubs
            entry = pick(rng, spec[name], held_out_share, used)
            text = entry if isinstance(entry, str) else entry[min(form, len(entry) - 1)]
            entity_type = "ORG" if name == "CLUB" else name
            # A leading article ("de KBC", "el PSOE") stays outside the entity, as in CoNLL.
            first, _, rest = text.partition(" ")
            if rest and first in ("el", "la", "de"):
                out += [(first, ""), (rest, entity_type)]
            else:
                out.append((text, entity_type))
            # Spanish contracts "de el" / "a el" to "del" / "al".
            if len(out) > 2 and out[-2] == ("el", "") and out[-3] in (("de", ""), ("a", "")):
                out[-3:-1] = [({"de": "del", "a": "al"}[out[-3][0]], "")]
        elif name == "NUM":
            out.append((str(rng.randint(2, 40)), ""))
        elif name == "GOALS":
            out.append((str(rng.choice([0, 0, 1, 1, 1, 2, 2, 3, 4])), ""))
        elif name == "DAY":
            out.append((rng.choice(spec["days"]), ""))
        elif name == "YEAR":
            out.append((str(rng.randint(1975, 1996)), ""))
        elif name == "DD":
            out.append((str(rng.randint(1, 28)), ""))
        elif name == "DATE":
            out.append((f"1996-08-{rng.randint(1, 28):02d}", ""))
        else:
            out.append((slot, ""))
    return out


def make_sentence(rng, lang, held_out_share):
    """A normal sentence, a results line ("CLUB CLUB 2 1"), or a 60-90 word run of joined clauses."""
    spec, roll = LANGUAGES[lang], rng.random()
    if roll < RESULTS_FRACTION:
        return fill(rng, lang, "{CLUB} {CLUB} {GOALS} {GOALS}", held_out_share)
    if roll >= RESULTS_FRACTION + LONG_FRACTION:
        return capitalize(fill(rng, lang, rng.choice(spec["templates"]), held_out_share))
    while True:
        # Clauses from distinct templates ending in "." (not datelines), glued by ", and" etc.
        templates = rng.sample([t for t in spec["templates"] if t.endswith(" .")], 8)
        pairs = []
        for template in templates:
            clause = fill(rng, lang, template, held_out_share)
            if pairs:
                pairs[-1:] = [(word, "") for word in rng.choice(spec["joiners"]).split()]  # replaces "."
                if not clause[0][1]:  # "The company ..." -> "..., and the company ..."
                    clause[0] = (clause[0][0].lower(), "")
            pairs += clause
            length = sum(len(text.split()) for text, _ in pairs)
            if length >= 60:
                break
        if 60 <= length <= 90:
            return capitalize(pairs)


def capitalize(pairs):
    """Upper-case the sentence's first letter ("российская выставка ..." -> "Российская ...")."""
    text, entity_type = pairs[0]
    return [(text[:1].upper() + text[1:], entity_type)] + pairs[1:]


def to_iob1(pairs):
    """(text, type) pairs -> (words, IOB1 tags): I- opens an entity, B- only after the same type."""
    words, tags, previous = [], [], ""
    for text, entity_type in pairs:
        for position, word in enumerate(text.split()):
            if not entity_type:
                tags.append("O")
            elif position == 0 and previous == entity_type:
                tags.append("B-" + entity_type)  # glued to an entity of the same type
            else:
                tags.append("I-" + entity_type)
            words.append(word)
        previous = entity_type
    return words, tags


def detokenize(words):
    """Raw-looking text for the unlabelled files: no space before punctuation."""
    text = " ".join(words)
    for mark in (" ,", " .", " ;"):
        text = text.replace(mark, mark[1:])
    return text


def write_sample(out, seed=13):
    """Write every file of the sample under `out`; same seed, same bytes."""
    out = Path(out)
    for lang in LANGUAGES:
        (out / lang).mkdir(parents=True, exist_ok=True)
        for split, count in SPLITS.items():
            # One generator per (seed, language, split): changing one split never shifts another.
            rng = random.Random(f"{seed}-{lang}-{split}")
            held_out_share = 0.0 if split == "train" else 0.5
            lines = []
            for _ in range(count):
                words, tags = to_iob1(make_sentence(rng, lang, held_out_share))
                lines += [f"{word} {tag}" for word, tag in zip(words, tags)] + [""]
            (out / lang / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8", newline="\n")
        rng = random.Random(f"{seed}-{lang}-unlabeled")
        raw = [detokenize(to_iob1(make_sentence(rng, lang, 0.3))[0]) for _ in range(N_UNLABELED)]
        (out / "unlabeled").mkdir(parents=True, exist_ok=True)
        (out / "unlabeled" / f"{lang}.txt").write_text("\n".join(raw) + "\n", encoding="utf-8", newline="\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    write_sample(args.out, args.seed)


if __name__ == "__main__":
    main()
