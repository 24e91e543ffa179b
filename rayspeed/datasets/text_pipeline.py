"""The text pipeline: read files -> tokenize and tag (blocks for language modelling, one row per
classified document) -> one counting pass -> encode each split.

The counting pass also gives the baseline a model must beat: the val perplexity of a unigram model
(each token predicted by its train frequency), or the test scores of always predicting the train
split's most frequent class.
"""


import numpy as np
import ray.data
from ray.data.aggregate import AggregateFnV2, Min, Sum, ValueCounter
from ray.data.block import BlockAccessor

from rayspeed.config.data import DataConfig
from rayspeed.datasets.baselines import majority_class, unigram_perplexity
from rayspeed.datasets.labelled_text import SPLIT_LABEL, class_counts, document_rows, tag_documents
from rayspeed.datasets.prepared import PreparedData, encode_splits, named_data_errors
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing, TextTransform
from rayspeed.datasets.rows import SPLIT_FLAGS
from rayspeed.datasets.statistics import aggregate_streaming
from rayspeed.datasets.text import LABEL, TOKENS, block_rows, fit_text, read_documents, tag_blocks
from rayspeed.errors import DataError


def build_text_datasets(data: DataConfig, *, seed: int, fitted: Preprocessing | None = None) -> PreparedData:
    """Builds the splits: token blocks (language modelling), or one row per classified document.

    Raises:
        DataError: unreadable source, a file that is not UTF-8 (naming it), a bad tokenizer file, too
            little text for one block of training, documents outside class folders, one class only.
    """
    classify = data.task == "classification"
    with named_data_errors(data):
        transform = fitted.text if fitted else fit_text(data)
        tagged = read_documents(data, seed=seed).map_batches(
            tag_documents if classify else tag_blocks, batch_format="numpy",
            fn_kwargs={"transform": transform, "split": data.split, "seed": seed})
        counted = _count(tagged, vocab_size=transform.vocab_size, classify=classify)
        if counted["_bad"]:
            raise DataError(f"data.source: {counted['bad_value']} ({counted['_bad']} files are not UTF-8 text)")
        split_rows = {name: int(counted[flag]) for name, flag in SPLIT_FLAGS.items()}
        if not split_rows["train"]:
            raise DataError(f"data.source: too little text for one training block of {transform.block_size + 1} "
                            "tokens" if not classify else "data.source: no training documents")
        if classify:
            counts = class_counts(counted[SPLIT_LABEL])
            preprocessing = fitted or _classes_of(counts, transform)
            baselines = majority_class(counts["train"], counts["test"], classes=preprocessing.classes)
        else:
            preprocessing = fitted or Preprocessing(label_column="", task="language_modeling", numeric=[],
                                                    text=transform)
            baselines = unigram_perplexity(counted["train_tokens"], counted["val_tokens"])
        datasets = encode_splits(tagged, document_rows if classify else block_rows, preprocessing=preprocessing,
                                 data=data, seed=seed, batch_format="numpy", train_rows=split_rows["train"])
    dropped = {"empty documents": counted["_empty"]} if classify else {}
    return PreparedData(datasets=datasets, preprocessing=preprocessing, input_spec=InputSpec.of(preprocessing),
                        rows_read=sum(split_rows.values()) + sum(dropped.values()), dropped=dropped,
                        missing_values={}, split_rows=split_rows, baselines=baselines)


def _classes_of(counts: dict[str, dict[str, int]], transform: TextTransform) -> Preprocessing:
    classes = sorted({label for split in counts.values() for label in split})
    if len(classes) < 2:
        raise DataError(f"data.source: the documents are in {len(classes)} class folder; need 2 or more")
    return Preprocessing(label_column=LABEL, task="classification", numeric=[], classes=classes, text=transform)


def _count(tagged: ray.data.Dataset, *, vocab_size: int, classify: bool) -> dict:
    """Rows per split flag, bad files (one named), and in the same streaming pass, the classes of each
    split's documents, or the target tokens of the train and val blocks."""
    aggregations = [Sum("_bad", alias_name="_bad"), Min("_bad_value", alias_name="bad_value"),
                    *(Sum(flag, alias_name=flag) for flag in SPLIT_FLAGS.values())]
    if classify:
        aggregations += [ValueCounter(SPLIT_LABEL, alias_name=SPLIT_LABEL), Sum("_empty", alias_name="_empty")]
    else:
        aggregations += [TokenCounts(split, vocab_size=vocab_size) for split in ("train", "val")]
    found = aggregate_streaming(tagged, aggregations)
    counted = ("_bad", "_empty", *SPLIT_FLAGS.values())
    return {name: int(value or 0) if name in counted else value for name, value in found.items()}


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
