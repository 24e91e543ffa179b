"""The text pipeline: read files -> tokenize and cut into tagged blocks -> one counting pass (blocks per
split, token frequencies of train and val) -> encode each split.

The counting pass also gives the baseline a language model must beat: the perplexity on the val
split of a unigram model, each token predicted by its frequency in the train split (add-one smoothed).
"""

import math

import numpy as np
import ray.data
from ray.data.aggregate import AggregateFnV2, Min, Sum
from ray.data.block import BlockAccessor

from rayspeed.config.data import DataConfig
from rayspeed.datasets.prepared import PreparedData, encode_splits, named_data_errors
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.datasets.statistics import aggregate_streaming
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
    """Blocks per split flag, bad files (one named), and the target tokens of train and val, in one
    streaming pass."""
    aggregations = [Sum("_bad", alias_name="_bad"), Min("_bad_value", alias_name="bad_value"),
                    *(Sum(flag, alias_name=flag) for flag in SPLIT_FLAGS.values()),
                    *(TokenCounts(split, vocab_size=vocab_size) for split in ("train", "val"))]
    found = aggregate_streaming(tagged, aggregations)
    return {name: int(value or 0) if name not in ("bad_value", "train_tokens", "val_tokens") else value
            for name, value in found.items()}


class TokenCounts(AggregateFnV2):
    """How often each token is a target (every token of a block but its first) in one split's blocks."""

    def __init__(self, split: str, *, vocab_size: int):
        self._flag, self._size = SPLIT_FLAGS[split], vocab_size
        super().__init__(f"{split}_tokens", on=TOKENS, ignore_nulls=False,
                         zero_factory=lambda: np.zeros(vocab_size, dtype=np.int64))

    def aggregate_block(self, block) -> np.ndarray:
        batch = BlockAccessor.for_block(block).to_batch_format("numpy")
        targets = batch[TOKENS][batch[self._flag] == 1][:, 1:]
        return np.bincount(targets.ravel(), minlength=self._size).astype(np.int64)

    def combine(self, current: np.ndarray, new: np.ndarray) -> np.ndarray:
        return current + new

    def finalize(self, accumulator: np.ndarray) -> np.ndarray:
        return accumulator
