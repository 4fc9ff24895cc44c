"""hub.py against a fake Hugging Face hub served on 127.0.0.1: no test reaches the network.

The fake answers exactly what huggingface_hub's `snapshot_download` asks (read from its source):
  GET  /api/models/{repo}/revision/{rev}   {"id", "sha"}: which commit the revision is
  GET  /api/models/{repo}/tree/{commit}    [{"type", "path", "size", "oid"}]: the files at that commit
  HEAD /{repo}/resolve/{commit}/{file}     X-Repo-Commit, ETag and Content-Length headers
  GET  /{repo}/resolve/{commit}/{file}     the bytes
and fails as the hub does, with an X-Error-Code header (RepoNotFound, RevisionNotFound, EntryNotFound).

huggingface_hub reads HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE, HF_HUB_DISABLE_TELEMETRY... once, into
`huggingface_hub.constants`, when it is imported. A user sets them before Python starts; a test sets
them with monkeypatch after the import, so `set_env` re-reads them with importlib.reload(constants),
and the fixture restores the environment and reloads again when the test ends.
"""
import hashlib
import importlib
import io
import json
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save

from minibert_ner.hub import ModelNotFound, model_folder
from minibert_ner.model import BertConfig, BertModel
from minibert_ner.weights import load_bert, read_tensors

SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Köln", "liegt", "am", "Rhein", "##s", "."]


# ---------------------------------------------------------------------------------------------
# the fake hub


class FakeHub:
    """Repos held in memory ({repo id: (commit, {filename: bytes})}), served over HTTP on 127.0.0.1."""

    def __init__(self):
        self.repos, self.requests = {}, []  # requests: (method, path) in the order they came
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def add(self, repo_id, files):
        commit = hashlib.sha1(repo_id.encode() + b"".join(sorted(files.values()))).hexdigest()
        self.repos[repo_id] = (commit, files)
        return commit

    def downloaded(self):
        """The files fetched (GET) from /resolve/, by name."""
        return sorted(path.rsplit("/", 1)[1] for method, path in self.requests
                      if method == "GET" and "/resolve/" in path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _handler_for(hub):
    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection, nothing kept alive
        def do_GET(self):
            self.answer(send_body=True)

        def do_HEAD(self):
            self.answer(send_body=False)

        def log_message(self, *args):  # keep the test output quiet
            pass

        def answer(self, send_body):
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path))
            if path.startswith("/api/models/"):
                rest = path[len("/api/models/"):]
                marker = "/revision/" if "/revision/" in rest else "/tree/"
                repo_id, _, revision = rest.partition(marker)
                commit, files = self.find(repo_id, revision)
                if commit is None:
                    return
                if marker == "/revision/":
                    body = {"id": repo_id, "sha": commit}
                else:
                    body = [{"type": "file", "path": name, "size": len(data),
                             "oid": hashlib.sha1(data).hexdigest()} for name, data in files.items()]
                return self.send(200, json.dumps(body).encode(), send_body, {"Content-Type": "application/json"})
            repo_id, _, rest = path[1:].partition("/resolve/")
            revision, _, filename = rest.partition("/")
            commit, files = self.find(repo_id, revision)
            if commit is None:
                return
            if filename not in files:
                return self.send(404, b"", send_body, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
            data = files[filename]
            self.send(200, data, send_body, {"X-Repo-Commit": commit,
                                             "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})

        def find(self, repo_id, revision):
            """(commit, files) of the repo at that revision, or (None, None) after answering 404."""
            if repo_id not in hub.repos:
                self.send(404, b"", True, {"X-Error-Code": "RepoNotFound"})
                return None, None
            commit, files = hub.repos[repo_id]
            if revision not in ("main", commit):
                self.send(404, b"", True, {"X-Error-Code": "RevisionNotFound"})
                return None, None
            return commit, files

        def send(self, status, body, send_body, headers):
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler


# ---------------------------------------------------------------------------------------------
# a tiny repo in mBERT's layout


def mbert_layout(vocab, seed=0):
    """(files of a hub repo, its state dict): TF-era names (`bert.` prefix, LayerNorm gamma/beta),
    the pooler, and BertForPreTraining's heads: masked-LM with `decoder.bias`, next-sentence."""
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(seed)
    state = {}
    for key, t in BertModel(config, add_pooler=True).state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state["bert." + key] = t.clone()
    C, V = config.hidden_size, config.vocab_size
    bias = torch.randn(V)
    state.update({"cls.predictions.bias": bias, "cls.predictions.decoder.bias": bias.clone(),
                  "cls.predictions.transform.dense.weight": torch.randn(C, C),
                  "cls.predictions.transform.dense.bias": torch.randn(C),
                  "cls.predictions.transform.LayerNorm.gamma": torch.ones(C),
                  "cls.predictions.transform.LayerNorm.beta": torch.zeros(C),
                  "cls.seq_relationship.weight": torch.randn(2, C), "cls.seq_relationship.bias": torch.zeros(2)})
    bin_file = io.BytesIO()
    torch.save(state, bin_file)
    hf_config = {**config.to_dict(), "architectures": ["BertForMaskedLM"], "model_type": "bert",
                 "directionality": "bidi", "pooler_type": "first_token_transform"}
    hf_config.pop("attn_implementation")
    files = {
        "config.json": json.dumps(hf_config).encode(),
        "vocab.txt": "".join(token + "\n" for token in vocab).encode(),
        "tokenizer_config.json": json.dumps({"do_lower_case": False, "model_max_length": 64}).encode(),
        "special_tokens_map.json": json.dumps({"unk_token": "[UNK]", "cls_token": "[CLS]"}).encode(),
        "model.safetensors": save(state),
        "pytorch_model.bin": bin_file.getvalue(),
        # what a real repo holds besides, and model_folder must never download
        "tf_model.h5": b"not needed", "flax_model.msgpack": b"not needed", "tokenizer.json": b"{}",
        "README.md": b"# tiny mBERT\n",
    }
    return files, state


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def set_env(monkeypatch):
    """set_env(NAME=value or None): change huggingface_hub's environment, as if Python had just started."""
    def set_and_reload(**values):
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        importlib.reload(constants)
    yield set_and_reload
    monkeypatch.undo()
    importlib.reload(constants)


@pytest.fixture
def hub(set_env, tmp_path):
    """A running fake hub; huggingface_hub pointed at it, with its cache (HF_HOME) in tmp_path."""
    fake = FakeHub()
    set_env(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=fake.url, HF_HUB_CACHE=None, HUGGINGFACE_HUB_CACHE=None,
            HF_HUB_OFFLINE=None, TRANSFORMERS_OFFLINE=None, HF_TOKEN=None, HUGGING_FACE_HUB_TOKEN=None,
            HF_HUB_DISABLE_TELEMETRY="1")  # telemetry would ask the hub which AI agents exist
    yield fake
    fake.stop()


# ---------------------------------------------------------------------------------------------
# tests


def test_first_call_downloads_only_what_a_bert_needs(hub, tmp_path):
    files, _ = mbert_layout(SMALL_VOCAB)
    commit = hub.add("org/tiny-mbert", files)
    folder = model_folder("org/tiny-mbert", log=lambda message: None)
    # the hub's standard cache layout, under HF_HOME
    assert folder == tmp_path / "hf" / "hub" / "models--org--tiny-mbert" / "snapshots" / commit
    assert hub.downloaded() == ["config.json", "model.safetensors", "special_tokens_map.json",
                                "tokenizer_config.json", "vocab.txt"]
    for name in hub.downloaded():
        assert (folder / name).read_bytes() == files[name]


def quiet(message):
    pass


def one_sentence(error):
    """The message of a ModelNotFound: one line, no huggingface_hub traceback or error text in it."""
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message and "Client Error" not in message, message
    return message


def test_second_call_uses_the_cache_with_the_hub_stopped(hub):
    hub.add("org/tiny-mbert", mbert_layout(SMALL_VOCAB)[0])
    first = model_folder("org/tiny-mbert", log=quiet)
    hub.stop()  # connection refused from now on: huggingface_hub falls back to its cache
    assert model_folder("org/tiny-mbert", log=quiet) == first


def test_offline_reads_the_cache_and_fails_clearly_for_what_it_lacks(hub, set_env):
    hub.add("org/tiny-mbert", mbert_layout(SMALL_VOCAB)[0])
    hub.add("org/other", mbert_layout(SMALL_VOCAB, seed=1)[0])
    first = model_folder("org/tiny-mbert", log=quiet)
    set_env(HF_HUB_OFFLINE="1")
    asked = len(hub.requests)
    assert model_folder("org/tiny-mbert", log=quiet) == first
    with pytest.raises(ModelNotFound) as error:
        model_folder("org/other", log=quiet)  # on the hub, but never downloaded
    assert len(hub.requests) == asked  # offline means not a single request
    message = one_sentence(error)
    assert "org/other" in message and "HF_HUB_OFFLINE" in message and "run once online" in message


def test_hub_down_and_not_cached_fails_clearly(hub):
    hub.stop()
    with pytest.raises(ModelNotFound) as error:
        model_folder("org/tiny-mbert", log=quiet)
    message = one_sentence(error)
    assert "cannot be reached" in message and "run once online" in message


def test_unknown_id_and_revision_fail_clearly(hub):
    hub.add("org/tiny-mbert", mbert_layout(SMALL_VOCAB)[0])
    with pytest.raises(ModelNotFound) as error:
        model_folder("org/no-such-bert", log=quiet)
    message = one_sentence(error)
    assert "org/no-such-bert" in message and "check the name" in message and "folder" in message
    with pytest.raises(ModelNotFound) as error:
        model_folder("org/tiny-mbert", revision="v9", log=quiet)
    assert "'v9'" in one_sentence(error)


@pytest.mark.parametrize("missing, expected", [
    (["vocab.txt"], "no vocab.txt"),  # e.g. a repo with tokenizer.json only
    (["config.json"], "no config.json"),
    (["model.safetensors", "pytorch_model.bin"], "neither model.safetensors nor pytorch_model.bin"),
])
def test_a_repo_missing_a_file_fails_clearly(hub, missing, expected):
    files = mbert_layout(SMALL_VOCAB)[0]
    hub.add("org/incomplete", {name: data for name, data in files.items() if name not in missing})
    with pytest.raises(ModelNotFound) as error:
        model_folder("org/incomplete", log=quiet)
    message = one_sentence(error)
    assert "org/incomplete" in message and expected in message and "pass a model folder" in message


def test_a_revision_pins_a_commit(hub, set_env):
    commit = hub.add("org/tiny-mbert", mbert_layout(SMALL_VOCAB)[0])
    folder = model_folder("org/tiny-mbert", revision=commit, log=quiet)
    assert folder.name == commit
    set_env(HF_HUB_OFFLINE="1")
    assert model_folder("org/tiny-mbert", revision=commit, log=quiet) == folder


def test_a_repo_with_only_pytorch_model_bin_is_converted_once(hub, set_env, tmp_path):
    files, state = mbert_layout(SMALL_VOCAB)
    del files["model.safetensors"]
    commit = hub.add("org/old-bert", files)
    said = []
    folder = model_folder("org/old-bert", log=said.append)
    assert folder == tmp_path / "hf" / "minibert_ner" / "models--org--old-bert" / commit
    assert any("converting pytorch_model.bin" in line for line in said)
    converted = load_file(folder / "model.safetensors")
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[key], state[key]) for key in state)
    for name in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (folder / name).read_bytes() == files[name]
    # a second run, offline, finds the converted folder and converts nothing
    set_env(HF_HUB_OFFLINE="1")
    said.clear()
    assert model_folder("org/old-bert", log=said.append) == folder
    assert not any("converting" in line for line in said)
    assert [p.name for p in folder.parent.iterdir()] == [commit]  # no temporary folder left behind


def test_the_folder_loads_as_a_model(hub):
    files, state = mbert_layout(SMALL_VOCAB)
    hub.add("org/tiny-mbert", files)
    model = load_bert(model_folder("org/tiny-mbert", log=quiet), verbose=False)
    assert torch.equal(model.embeddings.word_embeddings.weight, state["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(model.encoder.layer[1].output.LayerNorm.weight,  # gamma, renamed
                       state["bert.encoder.layer.1.output.LayerNorm.gamma"])
    skipped = [key for key, _ in model.load_report.skipped]
    assert "cls.predictions.decoder.bias" in skipped and "cls.seq_relationship.weight" in skipped


def test_mbert_layout_with_the_real_cased_vocab(hub, mbert_vocab):
    vocab = mbert_vocab.read_text(encoding="utf-8").splitlines()
    files, state = mbert_layout(vocab)
    hub.add("google-bert/bert-base-multilingual-cased", files)
    folder = model_folder("google-bert/bert-base-multilingual-cased", log=quiet)
    model = load_bert(folder, verbose=False)
    assert model.config.vocab_size == len(vocab) == 119547
    assert (folder / "vocab.txt").read_bytes() == mbert_vocab.read_bytes()
    assert json.loads((folder / "tokenizer_config.json").read_text())["do_lower_case"] is False


def test_a_local_folder_wins_over_a_hub_id_of_the_same_name(hub, tmp_path, monkeypatch):
    hub.add("org/tiny-mbert", mbert_layout(SMALL_VOCAB)[0])
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "org" / "tiny-mbert"
    local.mkdir(parents=True)
    for name, data in mbert_layout(SMALL_VOCAB, seed=2)[0].items():
        (local / name).write_bytes(data)
    assert model_folder("org/tiny-mbert", log=quiet).resolve() == local
    assert hub.requests == []
    with pytest.raises(ModelNotFound) as error:
        model_folder("org/tiny-mbert", revision="main", log=quiet)
    assert "hub ids only" in one_sentence(error)


def test_a_folder_without_weights_fails_clearly(hub, tmp_path):
    folder = tmp_path / "bert-base-multilingual-cased"  # Google's download: vocab and config, no weights
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in SMALL_VOCAB), encoding="utf-8")
    (folder / "bert_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelNotFound) as error:
        model_folder(folder, log=quiet)
    message = one_sentence(error)
    assert str(folder) in message and "no model.safetensors" in message and "bert_config.json, vocab.txt" in message
    assert "hub id" in message
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelNotFound) as error:
        model_folder(folder, log=quiet)
    assert "safetensors only" in one_sentence(error)
    assert hub.requests == []


@pytest.mark.parametrize("name", ["./no-such-folder", "../shared/no/such/folder", "a/b/c", "/no/such"])
def test_a_path_that_is_neither_a_folder_nor_a_hub_id(hub, name):
    with pytest.raises(ModelNotFound) as error:
        model_folder(name, log=quiet)
    assert "no such folder" in one_sentence(error)
    assert hub.requests == []


def test_train_with_cl_from_a_hub_id_offline_then_predict(hub, set_env, mbert_vocab, tmp_path, capsys):
    """The issue's acceptance: `train --model bert-base-multilingual-cased ... --aux CL` from the hub
    cache with HF_HUB_OFFLINE=1 (the cloze head starting from the checkpoint's MLM head, whose
    `decoder.bias` transformers writes), then predict on the run."""
    from minibert_ner import predict, train
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    files, state = mbert_layout(mbert_vocab.read_text(encoding="utf-8").splitlines())
    hub.add("bert-base-multilingual-cased", files)
    model_folder("bert-base-multilingual-cased", log=quiet)  # once online: into the cache
    hub.stop()
    set_env(HF_HUB_OFFLINE="1")
    out = tmp_path / "run"
    argv = ["--model", "bert-base-multilingual-cased", "--train", f"en={sample / 'en/train.txt'}",
            "--dev", f"de={sample / 'de/dev.txt'}", "--target", "de", "--aux", "CL",
            "--unlabeled", f"de={sample / 'unlabeled/de.txt'}", "--max-sentences", "16", "--epochs", "1",
            "--batch-size", "8", "--out", str(out), "--quiet"]
    assert train.main(argv) == 0, capsys.readouterr().err
    aux = read_tensors(out / "best" / "aux_heads.safetensors")
    trained_bias = aux["cls.predictions.bias"]
    assert (trained_bias - state["cls.predictions.bias"]).abs().max() < 1e-2  # started from the checkpoint's
    assert predict.main(["--model", str(out), "Angela Merkel besuchte Paris ."]) == 0
    assert "Angela Merkel besuchte Paris ." in capsys.readouterr().out


def test_a_sentencepiece_model_by_hub_id_offline_trains_and_predicts(hub, set_env, unigram_model, tmp_path, capsys):
    """`--model intfloat/multilingual-e5-small`: a BertModel repo with a Unigram tokenizer.json and no
    vocab.txt (its sentencepiece.bpe.model and ONNX copies are never downloaded), then offline."""
    from minibert_ner import predict, train
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    files = {name: (unigram_model / name).read_bytes() for name in
             ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")}
    files.update({"sentencepiece.bpe.model": b"not needed", "onnx/model.onnx": b"not needed", "README.md": b"# e5"})
    hub.add("intfloat/multilingual-e5-small", files)
    folder = model_folder("intfloat/multilingual-e5-small", log=quiet)
    assert hub.downloaded() == ["config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                                "tokenizer_config.json"]
    hub.stop()
    set_env(HF_HUB_OFFLINE="1")
    assert model_folder("intfloat/multilingual-e5-small", log=quiet) == folder
    out = tmp_path / "run"
    argv = ["--model", "intfloat/multilingual-e5-small", "--train", f"en={sample / 'en/train.txt'}",
            "--dev", f"de={sample / 'de/dev.txt'}", "--target", "de", "--max-sentences", "16", "--epochs", "1",
            "--batch-size", "8", "--head-lr", "3e-3", "--trim-vocab", "--out", str(out), "--quiet"]
    assert train.main(argv) == 0, capsys.readouterr().err
    assert (out / "best" / "tokenizer.json").is_file() and not (out / "best" / "vocab.txt").exists()
    assert predict.main(["--model", str(out), "--json", "Angela Merkel besuchte Paris ."]) == 0
    assert '"text": "Angela Merkel besuchte Paris ."' in capsys.readouterr().out
