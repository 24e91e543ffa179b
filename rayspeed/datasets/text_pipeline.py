"""The text pipeline: read files -> tokenize and cut into tagged blocks -> one counting pass (blocks per
split, token frequencies of train and val) -> encode each split.

The counting pass also gives the baseline a language model must beat: the perplexity on the val
split of a unigram model, each token predicted by its frequency in the train split (add-one smoothed).
"""

import math

import numpy as np
import ray.data

from rayspeed.config.data import DataConfig
from rayspeed.datasets.prepared import PreparedData, encode_splits, named_data_errors
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.datasets.text import TOKENS, block_rows, fit_text, read_documents, tag_blocks
from rayspeed.errors import DataError


def build_text_datasets(data: DataConfig, *, seed: int, fitted: Preprocessing | None = None) -> PreparedData:
    """Builds the splits of token blocks.

    Raises:
        DataError: unreadable source, a file that is not UTF-8 (naming it), a bad tokenizer file, too
            little text for one block of training.
    """
    with named_data_errors(data):
        preprocessing = fitted or Preprocessing(label_column="", task="language_modeling", numeric=[],
                                                text=fit_text(data))
        tagged = read_documents(data, seed=seed).map_batches(tag_blocks, batch_format="numpy", fn_kwargs={
            "transform": preprocessing.text, "split": data.split, "seed": seed})
        counted = _count(tagged, vocab_size=preprocessing.text.vocab_size)
        if counted["_bad"]:
            raise DataError(f"data.source: {counted['bad_value']} ({counted['_bad']} files are not UTF-8 text)")
        split_rows = {name: int(counted[flag]) for name, flag in SPLIT_FLAGS.items()}
        if not split_rows["train"]:
            raise DataError(f"data.source: too little text for one training block of "
                            f"{preprocessing.text.block_size + 1} tokens")
        datasets = encode_splits(tagged, block_rows, preprocessing=preprocessing, data=data, seed=seed,
                                 batch_format="numpy")
    return PreparedData(datasets=datasets, preprocessing=preprocessing, input_spec=InputSpec.of(preprocessing),
                        rows_read=sum(split_rows.values()), dropped={}, missing_values={}, split_rows=split_rows,
                        baselines=_baselines(counted))


def _baselines(counted: dict) -> dict[str, float]:
    unigram = unigram_perplexity(counted["train_tokens"], counted["val_tokens"])
    return {} if unigram is None else {"val_perplexity_unigram": unigram}


def unigram_perplexity(train_counts: np.ndarray, val_counts: np.ndarray) -> float | None:
    """exp of the val targets' mean negative log probability under add-one smoothed train frequencies."""
    if not val_counts.sum():
        return None
    log_p = np.log((train_counts + 1.0) / (train_counts.sum() + len(train_counts)))
    return float(math.exp(-(val_counts * log_p).sum() / val_counts.sum()))


def _count(tagged: ray.data.Dataset, *, vocab_size: int) -> dict:
    """Blocks per split flag, bad files, and the target tokens (all but each block's first) of train and val."""
    partial = tagged.map_batches(_block_counts, batch_format="numpy", batch_size=None,
                                 fn_kwargs={"vocab_size": vocab_size})
    totals = {"train_tokens": np.zeros(vocab_size, dtype=np.int64), "val_tokens": np.zeros(vocab_size, dtype=np.int64),
              "_bad": 0, "bad_value": "", **{flag: 0 for flag in SPLIT_FLAGS.values()}}
    for batch in partial.iter_batches(batch_format="numpy", batch_size=None):
        for index in range(len(batch["_bad"])):
            for name in ("train_tokens", "val_tokens", "_bad", *SPLIT_FLAGS.values()):
                totals[name] = totals[name] + batch[name][index]
            totals["bad_value"] = totals["bad_value"] or str(batch["bad_value"][index])
    return totals


def _block_counts(batch: dict, *, vocab_size: int) -> dict:
    targets = batch[TOKENS][:, 1:]

    def counts(flag: str) -> np.ndarray:
        return np.bincount(targets[batch[flag] == 1].ravel(), minlength=vocab_size)[None, :]

    bad = [value for value in batch["_bad_value"] if value]
    return {"train_tokens": counts(SPLIT_FLAGS["train"]), "val_tokens": counts(SPLIT_FLAGS["val"]),
            "_bad": np.asarray([batch["_bad"].sum()]), "bad_value": np.asarray([bad[0] if bad else ""], dtype=object),
            **{flag: np.asarray([batch[flag].sum()]) for flag in SPLIT_FLAGS.values()}}
