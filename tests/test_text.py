"""Text: real files (CPython's own standard library sources) tokenized into blocks by the byte tokenizer
and by a Hugging Face tokenizer trained here; a GPT-style model trained by real DeepSpeed beats the
unigram baseline measured by the same pipeline."""

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import experiment, logged_table, metrics, rayspeed_command, run_dir, train

from rayspeed.config import load_config
from rayspeed.config.data import DataConfig, SplitFractions
from rayspeed.datasets import Preprocessing, build_datasets
from rayspeed.datasets.baselines import unigram_perplexity
from rayspeed.datasets.text import tag_blocks
from rayspeed.datasets.tokenizing import Tokenizer, text_transform
from rayspeed.errors import DataError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ("textwrap", "string", "shlex", "fractions", "bisect", "heapq", "glob", "fnmatch", "calendar", "argparse")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """About 150 KB of real text in 10 files."""
    root = tmp_path_factory.mktemp("corpus")
    for name in MODULES:
        (root / f"{name}.txt").write_text((STDLIB / f"{name}.py").read_text(encoding="utf-8"), encoding="utf-8")
    return root


def lm_experiment(tmp_path: Path, source: Path, *, text: dict | None = None, **sections) -> Path:
    """TINY_DIGITS turned into language modelling on `source`, blocks of 32 tokens."""
    return experiment(tmp_path, **{
        "data": {"source": str(source), "format": "text", "task": "language_modeling",
                 "text": {"block_size": 32, **(text or {})}},
        "model": {"name": "transformer", "args": {"layers": 2, "heads": 2, "dim": 64}},
        "checkpoint": {"score_metric": "val_perplexity", "score_mode": "min"}, **sections})


def test_bytes_become_blocks_that_decode_back_and_a_file_that_is_not_utf8_is_named():
    transform = text_transform("bytes", block_size=7, read_file=None)
    documents = ["héllo wörld, ", "a second file!!"]  # 15 + 1 + 15 + 1 tokens: 4 blocks of 8
    batch = {"bytes": np.asarray([d.encode() for d in documents], dtype=object),
             "path": np.asarray(["a.txt", "b.txt"], dtype=object)}
    tagged = tag_blocks(batch, transform=transform, split=SplitFractions(), seed=0)
    blocks = tagged["tokens"]
    assert blocks.shape == (4, 8) and not tagged["_bad"].any()
    stream = blocks.ravel().tolist()
    assert stream.count(transform.end_of_document) == 2
    assert Tokenizer(transform).decode(stream) == "".join(documents)
    assert sum(tagged[f"_in_{s}"].sum() for s in ("train", "val", "test")) == 4
    # A document's blocks are the same whichever files Ray reads beside it.
    alone = [tag_blocks({name: values[i:i + 1] for name, values in batch.items()}, transform=transform,
                        split=SplitFractions(), seed=0) for i in range(2)]
    assert sorted(h for part in alone for h in part["_hash"]) == sorted(tagged["_hash"])

    batch["bytes"][1] = b"caf\xe9"
    tagged = tag_blocks(batch, transform=transform, split=SplitFractions(), seed=0)
    assert tagged["_bad"].sum() == 1 and tagged["_bad_value"][-1] == "b.txt: not UTF-8 text (byte 3 is 0xe9)"
    assert not any(tagged[f"_in_{s}"][-1] for s in ("train", "val", "test"))


def test_unigram_perplexity_of_a_uniform_text_is_its_vocabulary():
    counts = np.full(50, 1000)
    assert unigram_perplexity(counts, counts)["val_perplexity_unigram"] == pytest.approx(50, rel=1e-3)
    assert unigram_perplexity(counts, np.zeros(50)) == {}


def test_a_hugging_face_tokenizer_file_cuts_the_same_text(tmp_path, corpus, ray_session):
    from tokenizers import Tokenizer as HuggingFaceTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = HuggingFaceTokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train([str(f) for f in sorted(corpus.iterdir())],
                    trainers.BpeTrainer(vocab_size=500, special_tokens=["[UNK]"]))
    tokenizer.decoder = decoders.ByteLevel()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))

    data = load_config(lm_experiment(tmp_path, corpus, text={"tokenizer": str(path)})).data
    prepared = build_datasets(data, seed=0)
    transform = prepared.preprocessing.text
    assert transform.vocab_size == tokenizer.get_vocab_size() + 1 and transform.tokenizer_json
    assert prepared.input_spec.feature_shape == [33] and prepared.input_spec.vocab_size == transform.vocab_size
    text = "".join(f.read_text() for f in corpus.iterdir())
    restored = Tokenizer(Preprocessing.from_dict(json.loads(json.dumps(prepared.preprocessing.to_dict()))).text)
    blocks = [b for b in prepared.datasets["val"].to_pandas()["features"] if transform.end_of_document not in b]
    assert len(blocks) > 10
    for block in blocks[:10]:
        piece = restored.decode([int(i) for i in block[1:-1]])  # the ends may be parts of a character
        assert len(piece) > 40 and piece in text
    # Fewer tokens than bytes: the byte tokenizer cuts more blocks from the same files.
    assert sum(prepared.split_rows.values()) * 2 < sum(
        build_datasets(data.model_copy(update={"text": data.text.model_copy(update={"tokenizer": "bytes"})}),
                       seed=0).split_rows.values())


def test_a_bad_tokenizer_file_is_named(tmp_path, corpus):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    data = load_config(lm_experiment(tmp_path, corpus, text={"tokenizer": str(bad)})).data
    with pytest.raises(DataError, match=r"data.text.tokenizer: cannot load .*tokenizer.json"):
        build_datasets(data, seed=0)


def test_a_small_gpt_under_zero3_beats_the_unigram_baseline(tmp_path, corpus, ray_address):
    config = lm_experiment(tmp_path, corpus, run={"name": "gpt"},
                           train={"epochs": None, "max_steps": 150, "global_batch": 64, "micro_batch_per_worker": 32,
                                  "lr": 0.003, "warmup_steps": 10, "lr_schedule": "constant",
                                  "zero_stage": 3},  # parameters sharded: the tied embedding and output layer
                           checkpoint={"score_metric": "val_perplexity", "score_mode": "min", "every_n_steps": 75},
                           tracking={"mode": "offline", "log_every_n_steps": 20})
    summary = train(config, ray_address)
    directory = run_dir(tmp_path, "gpt")
    baseline = json.loads((directory / "data_report.json").read_text())["baselines"]["val_perplexity_unigram"]
    assert summary.baselines == {"val_perplexity_unigram": baseline}
    assert 15 < baseline < 60  # bytes of Python source
    assert summary.final["val_perplexity"] < 0.6 * baseline, (summary.final, baseline)
    saved = json.loads((max(directory.glob("step_*")) / "preprocessing.json").read_text())
    assert saved["text"] == {"tokenizer": "bytes", "block_size": 32, "vocab_size": 257, "tokenizer_json": None,
                             "strip_headers": False}

    # What it writes at every epoch end, from the same prompts, in metrics.jsonl and in W&B.
    sampled = [row for row in metrics(directory) if "samples" in row]
    assert len(sampled) >= 2 and all(len(row["samples"]) == 3 for row in sampled)
    assert [s["prompt"] for s in sampled[0]["samples"]] == [s["prompt"] for s in sampled[-1]["samples"]]
    assert any(s["continuation"] for s in sampled[-1]["samples"])
    run_id = json.loads((directory / "rayspeed.json").read_text())["wandb_run_id"]
    table = logged_table(directory / "wandb", run_id, "val/samples")
    assert table["columns"] == ["prompt", "continuation"]
    assert table["data"] == [[s["prompt"], s["continuation"]] for s in sampled[-1]["samples"]]

    # `rayspeed evaluate` of the last checkpoint: training's own validation numbers, from plain torch.
    evaluated = rayspeed_command("evaluate", str(directory), "--checkpoint", "latest", "--split", "val",
                                 "--address", ray_address)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(next((directory / "evaluation").glob("*-val/metrics.json")).read_text())
    assert scores["loss"] == pytest.approx(summary.final["val_loss"], rel=1e-4)
    assert scores["perplexity"] == pytest.approx(summary.final["val_perplexity"], rel=1e-4)


def test_classified_documents_are_one_padded_row_each_without_their_headers(tmp_path, ray_session):
    for label, count in (("ham", 30), ("spam", 10)):
        (tmp_path / "mail" / label).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "mail" / label / f"{i}.eml").write_text(
                f"From: someone\r\nSubject: {label} {i}\r\n\r\n{label} body {i}\n", encoding="utf-8")
    (tmp_path / "mail" / "ham" / "headers-only.eml").write_text("From: someone\n\n", encoding="utf-8")
    data = DataConfig(source=str(tmp_path / "mail"), format="text", task="classification",
                      text={"block_size": 16, "strip_headers": True})
    prepared = build_datasets(data, seed=0)
    spec = prepared.input_spec
    assert spec.classes == ["ham", "spam"] and spec.feature_shape == [16] and spec.pad_id == 256
    assert sum(prepared.split_rows.values()) == 40 and prepared.dropped == {"empty documents": 1}
    tokenizer = Tokenizer(prepared.preprocessing.text)
    for dataset in prepared.datasets.values():
        batch = dataset.take_batch(100)
        for ids, label in zip(batch["features"], batch["label"], strict=True):
            text = tokenizer.decode([int(i) for i in ids])  # the pad token decodes to nothing
            assert text.startswith(f"{spec.classes[label]} body ") and "Subject" not in text
            assert ids[-1] == spec.pad_id
    test = prepared.split_rows["test"]
    assert prepared.baselines["test_accuracy_majority"] == pytest.approx(
        prepared.datasets["test"].filter(expr="label == 0").count() / test)

    (tmp_path / "mail" / "stray.eml").write_text("no class", encoding="utf-8")
    with pytest.raises(DataError, match=r"stray.eml is not in a class folder"):
        build_datasets(data, seed=0)
