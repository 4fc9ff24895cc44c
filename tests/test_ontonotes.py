"""The CoNLL-2012 reader on small hand-written files in the exact OntoNotes format (en, zh, ar).

The sentences are invented: OntoNotes is licensed, so no line of it is in this repository.
"""
from pathlib import Path

import pytest

from minibert_ner import predict
from minibert_ner.data import DataError, read_conll
from minibert_ner.tools import datasets, evaluate
from minibert_ner.tools.ontonotes import convert, find_conll_files, main, read_conll2012
from minibert_ner.train import TrainConfig, train

# Columns: document, part, word number, WORD, POS, parse bit, predicate lemma, frameset, sense,
# speaker, NAMED ENTITIES, one column per predicate, coreference. Padded as the real files are.
ENGLISH = """\
#begin document (nw/demo/00/demo_0001); part 000
nw/demo/00/demo_0001   0    0      Maria   NNP  (TOP(S(NP*     -    -   -   -   (PERSON*       (ARG0*   (1
nw/demo/00/demo_0001   0    1      Lopez   NNP           *)    -    -   -   -         *)           *)   1)
nw/demo/00/demo_0001   0    2       flew   VBD        (VP*    fly   01   1   -          *          (V*)    -
nw/demo/00/demo_0001   0    3         to    IN        (PP*     -    -   -   -          *       (ARG1*    -
nw/demo/00/demo_0001   0    4     Lisbon   NNP      (NP*)))    -    -   -   -      (GPE)            *)  (2)
nw/demo/00/demo_0001   0    5         on    IN        (PP*     -    -   -   -          *   (ARGM-TMP*    -
nw/demo/00/demo_0001   0    6     Monday   NNP     (NP*)))     -    -   -   -     (DATE)            *)   -
nw/demo/00/demo_0001   0    7          .     .          *))    -    -   -   -          *             *   -

nw/demo/00/demo_0001   0    0        She   PRP  (TOP(S(NP*)    -    -   -   -          *       (ARG0*)  (1)
nw/demo/00/demo_0001   0    1        met   VBD        (VP*   meet   01   1   -          *          (V*)    -
nw/demo/00/demo_0001   0    2       Anna   NNP    (NP(NP*)     -    -   -   -   (PERSON)       (ARG1*    -
nw/demo/00/demo_0001   0    3        Bob   NNP       (NP*))    -    -   -   -   (PERSON)            *)   -
nw/demo/00/demo_0001   0    4          .     .          *))    -    -   -   -          *             *   -

#end document
#begin document (nw/demo/00/demo_0001); part 001
nw/demo/00/demo_0001   1    0        The    DT  (TOP(S(NP*     -    -   -   -      (ORG*       (ARG0*    -
nw/demo/00/demo_0001   1    1     United   NNP           *     -    -   -   -          *             *   -
nw/demo/00/demo_0001   1    2    Nations  NNPS           *)    -    -   -   -          *)            *)   -
nw/demo/00/demo_0001   1    3       paid   VBD        (VP*    pay   01   1   -          *          (V*)    -
nw/demo/00/demo_0001   1    4          #     #       (NP*      -    -   -   -    (MONEY*       (ARG1*    -
nw/demo/00/demo_0001   1    5          5    CD           *)    -    -   -   -          *)            *)   -
nw/demo/00/demo_0001   1    6          .     .          *))    -    -   -   -          *             *   -

#end document
"""


def line(doc, part, i, word, names, pos="XX"):
    """One token line with the 13 columns of a sentence with one predicate."""
    return f"{doc}  {part}  {i}  {word}  {pos}  *  -  -  -  -  {names}  *  -"


def document(doc, sentences):
    """A one-part document: sentences are lists of (word, named-entity cell)."""
    body = "\n\n".join("\n".join(line(doc, 0, i, w, n) for i, (w, n) in enumerate(s)) for s in sentences)
    return f"#begin document ({doc}); part 000\n{body}\n\n#end document\n"


# Chinese: segmented words, no spaces inside a word. "Li Ming visited the United Nations delegation
# in Shanghai yesterday."
CHINESE = document("nw/demo/00/chtb_0001", [[
    ("李明", "(PERSON)"), ("昨天", "(DATE)"), ("在", "*"), ("上海", "(GPE)"), ("访问", "*"), ("了", "*"),
    ("联合国", "(ORG)"), ("代表团", "*"), ("。", "*")]])

# Arabic as skeleton2conll writes it: token#lemma#unvocalized#vocalized, the token vocalized with
# its clitics split off ("وَ-" and). "Muhammad visited Beirut and met the United Nations."
ARABIC = document("nw/demo/00/ann_0001", [[
    ("زارَ#زار_1#zAr#zAra", "*"), ("مُحَمَّدٌ#مُحَمَّد_1#mHmd#muHam~adN", "(PERSON)"),
    ("بَيْرُوتَ#بَيْرُوت_1#byrwt#bayoruwta", "(GPE)"), ("وَ-#wa_1#w#wa", "*"),
    ("اِلْتَقَى#اِلْتَقَى_1#AltqY#{ilotaqaY", "*"), ("بِ-#bi_1#b#bi", "*"),
    ("الأُمَمِ#أُمَّة_1#AlAmm#Al>umami", "(ORG*"), ("المُتَّحِدَةِ#مُتَّحِد_1#AlmtHdp#Almut~aHidapi", "*)"),
    (".#.#.#.", "*")]])


def write(folder, language, text, name="demo_0001.v4_gold_conll", genre="nw"):
    """Write `text` where the CoNLL-2012 tree keeps it: .../data/<language>/annotations/<genre>/..."""
    path = Path(folder) / "data" / language / "annotations" / genre / "demo" / "00" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_english_brackets_become_iob1_over_parts_and_sentences(tmp_path):
    sentences = read_conll2012(write(tmp_path, "english", ENGLISH))
    assert [s.words for s in sentences] == [
        ["Maria", "Lopez", "flew", "to", "Lisbon", "on", "Monday", "."], ["She", "met", "Anna", "Bob", "."],
        ["The", "United", "Nations", "paid", "#", "5", "."]]  # "#" is an English token, kept
    assert [s.tags for s in sentences] == [
        ["I-PERSON", "I-PERSON", "O", "O", "I-GPE", "O", "I-DATE", "O"],
        ["O", "O", "I-PERSON", "B-PERSON", "O"],  # IOB1: B- only where a PERSON follows a PERSON
        ["I-ORG", "I-ORG", "I-ORG", "O", "I-MONEY", "I-MONEY", "O"]]
    assert [s.line for s in sentences] == [2, 11, 19] and {s.lang for s in sentences} == {"en"}


def test_chinese_language_comes_from_the_folder(tmp_path):
    (sentence,) = read_conll2012(write(tmp_path, "chinese", CHINESE))
    assert sentence.lang == "zh" and sentence.words[:4] == ["李明", "昨天", "在", "上海"]
    assert sentence.tags == ["I-PERSON", "I-DATE", "O", "I-GPE", "O", "O", "I-ORG", "O", "O"]


def test_arabic_keeps_the_treebank_token_or_a_plain_form(tmp_path):
    path = write(tmp_path, "arabic", ARABIC)
    (vocalized,) = read_conll2012(path)
    assert vocalized.lang == "ar"
    assert vocalized.words[:4] == ["زارَ", "مُحَمَّدٌ", "بَيْرُوتَ", "وَ-"]  # lemma and other forms dropped
    assert vocalized.tags == ["O", "I-PERSON", "I-GPE", "O", "O", "O", "I-ORG", "I-ORG", "O"]
    (plain,) = read_conll2012(path, arabic="plain")
    assert plain.words == ["زار", "محمد", "بيروت", "و", "التقى", "ب", "الأمم", "المتحدة", "."]
    assert plain.tags == vocalized.tags


# (what is wrong, the named-entity cells of a 4-word sentence, the line the error names, a phrase of it)
MALFORMED = [
    ("unclosed", ["(PERSON*", "*", "*", "*"], 2, "never closed"),
    ("closed twice", ["(PERSON*", "*)", "*)", "*"], 4, "never opened"),
    ("nested", ["(ORG*", "(PERSON*", "*)", "*)"], 3, "do not nest"),
    ("close without open", ["*", "*)", "*", "*"], 3, "never opened"),
    ("unknown type", ["(PER)", "*", "*", "*"], 2, "unknown entity type 'PER'"),
    ("two spans in one cell", ["(PERSON*)(GPE*)", "*", "*", "*"], 2, "expected *, (TYPE*, *) or (TYPE)"),
    ("bare open", ["(GPE", "*", "*", "*"], 2, "expected *, (TYPE*"),
]


@pytest.mark.parametrize("what, cells, at, phrase", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_brackets_name_file_and_line(tmp_path, what, cells, at, phrase):
    path = tmp_path / "bad.v4_gold_conll"
    path.write_text(document("nw/x/00/x", [list(zip("abcd", cells))]), encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_conll2012(path, lang="en")
    assert str(error.value).startswith(f"{path}:{at}: ") and phrase in str(error.value)


@pytest.mark.parametrize("text, at, phrase", [
    (document("d", [[("a", "*")]]).replace("#end document\n", ""), 1, "without #end document"),
    ("#end document\n", 1, "without a #begin document"),
    (line("d", 0, 0, "a", "*") + "\n", 1, "outside any document"),
    ("#begin document (d); part 000\nd 0 0 a XX * - - - - *\n#end document\n", 2, "11 columns"),
    (document("d", [[("[WORD]", "*")]]), 2, "skeleton file"),
])
def test_malformed_documents_name_file_and_line(tmp_path, text, at, phrase):
    path = tmp_path / "bad.v4_gold_conll"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_conll2012(path, lang="en")
    assert str(error.value).startswith(f"{path}:{at}: ") and phrase in str(error.value)


def test_folders_give_their_gold_conll_files_without_the_pt_genre(tmp_path):
    english = write(tmp_path, "english", ENGLISH)
    write(tmp_path, "english", ENGLISH, genre="pt")  # the Bible: no name annotation in OntoNotes
    write(tmp_path, "english", ENGLISH, name="demo_0001.v4_auto_conll")
    assert find_conll_files(tmp_path / "data" / "english") == [english]


def tiny_config(tmp_path, **kw):
    """A 2-layer random BERT with its vocab built from the training words: seconds per run."""
    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return TrainConfig(epochs=3, lr=1e-3, batch_size=4, tiny=tiny, quiet=True, out=str(tmp_path / "run"), **kw)


def test_converted_files_are_read_trained_on_and_scored(tmp_path, capsys):
    folders = [write(tmp_path, lang, text).parent for lang, text in
               [("english", ENGLISH), ("chinese", CHINESE), ("arabic", ARABIC)]]
    out = tmp_path / "ontonotes.txt"
    # `python -m minibert_ner.tools.datasets convert`, the documented command
    assert datasets.main(["convert", "--from", "conll2012", *map(str, folders), "--out", str(out)]) == 0
    assert "5 sentences, 38 tokens, 14 entities" in capsys.readouterr().err
    # the library's one CoNLL reader reads the conversion back unchanged
    expected = convert(folders, tmp_path / "again.txt")
    assert [(s.words, s.tags) for s in read_conll(out, "xx")] == [(s.words, s.tags) for s in expected]
    # train on it, tag it with the trained model, score the tags with the conlleval drop-in
    result = train(tiny_config(tmp_path, train=[("xx", str(out))], dev=[("xx", str(out))], test=[("xx", str(out))]))
    assert 0.0 <= result["test"]["xx"] <= 1.0
    predictions = tmp_path / "predicted.txt"
    assert predict.main(["--model", str(tmp_path / "run"), "--conll", str(out), "--out", str(predictions)]) == 0
    assert evaluate.main([str(predictions)]) == 0
    assert "processed 38 tokens with 14 phrases" in capsys.readouterr().out


def test_command_line_error_is_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.v4_gold_conll"
    bad.write_text(document("d", [[("a", "(PERSON*")]]), encoding="utf-8")
    assert main(["--from", "conll2012", str(bad), "--lang", "en", "--out", str(tmp_path / "o.txt")]) == 2
    assert capsys.readouterr().err == f"error: {bad}:2: entity (PERSON* is never closed (its sentence ends " \
                                      f"at line 3); close it with *)\n"


def test_language_override_and_unreadable_input(tmp_path):
    path = write(tmp_path, "english", ENGLISH)
    assert {s.lang for s in read_conll2012(path, lang="xx")} == {"xx"}
    with pytest.raises(DataError, match="no such file"):
        read_conll2012(tmp_path / "missing_conll", lang="en")
