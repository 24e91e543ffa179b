"""Classified text: one document per file in a folder of class folders. Each document's first
`block_size` tokens, the end-of-document token filling the rest, are one row with its class; rows are
split by a hash of those tokens, so documents the model sees alike (the same body under other
headers) share a split."""

import numpy as np

from rayspeed.config.data import SplitFractions
from rayspeed.datasets.preprocessing import Preprocessing, TextTransform
from rayspeed.datasets.rows import SPLIT_CODES, content_digests, split_tags
from rayspeed.datasets.text import LABEL, TOKENS, decode_utf8
from rayspeed.datasets.tokenizing import Tokenizer

SPLIT_LABEL = "_split_label"  # "<split>:<class>" of usable rows, counted in one pass


def tag_documents(batch: dict, *, transform: TextTransform, split: SplitFractions, seed: int) -> dict:
    """Each file as one row: int32 `tokens` (block_size), `label` (its class folder), `_hash`, the split
    flags and `_split_label`; a file that is not UTF-8 is flagged `_bad` and named in `_bad_value`; a
    document without a token (an email of headers only, under `strip_headers`) is flagged `_empty`
    and used nowhere."""
    texts, problems = decode_utf8(batch)
    rows = np.full((len(texts), transform.block_size), transform.pad_id, dtype=np.int32)
    empty = np.zeros(len(texts), dtype=bool)
    for index, ids in enumerate(Tokenizer(transform).encode([text or "" for text in texts])):
        kept = ids[:transform.block_size]
        rows[index, :len(kept)] = kept
        empty[index] = problems[index] is None and not len(kept)
    usable = np.asarray([problem is None for problem in problems], dtype=bool) & ~empty
    labels = np.asarray([str(label) for label in batch[LABEL]], dtype=object)
    tags = split_tags(content_digests([row.tobytes() for row in rows], seed=seed), split, usable=usable)
    names = {code: name for name, code in SPLIT_CODES.items()}
    split_label = [f"{names[code]}:{label}" if ok else None for code, label, ok in zip(tags["_split"], labels, usable,
                                                                                         strict=True)]
    return {TOKENS: rows, LABEL: labels, "_bad": (~usable & ~empty).astype(np.int8), "_empty": empty.astype(np.int8),
            "_bad_value": np.asarray(problems, dtype=object), SPLIT_LABEL: np.asarray(split_label, dtype=object),
            **tags}


def class_counts(counted: dict) -> dict[str, dict[str, int]]:
    """{split: {class: documents}} from the counted `_split_label` values."""
    counts: dict[str, dict[str, int]] = {name: {} for name in SPLIT_CODES}
    for value, count in zip(counted["values"], counted["counts"], strict=True):
        if value is not None:
            name, label = value.split(":", 1)
            counts[name][label] = int(count)
    return counts


def document_rows(batch: dict, *, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """Model rows: `features` (the tokens), `label` (class index) and `row_hash`."""
    index = {name: i for i, name in enumerate(preprocessing.classes)}
    return {"features": batch[TOKENS].astype(np.int32),
            "label": np.asarray([index[str(label)] for label in batch[LABEL]], dtype=np.int64),
            "row_hash": batch["_hash"].astype(np.int64)}
