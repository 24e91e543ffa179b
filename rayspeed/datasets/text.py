"""Text in: plain-text files read whole by Ray Data (one file, one document), tokenized and cut into
fixed-length blocks, each tagged with its split and hash the way table rows are.

Blocks are split one by one (by a hash of their tokens), not file by file, so a corpus of one file
has validation and test text too; a block never spans two batches of files, and each batch's last
partial block is left out (under one block per batch of files).
"""

import numpy as np
import pandas as pd
import ray.data
from ray.data import FileShuffleConfig

from rayspeed.config.data import DataConfig, SplitFractions
from rayspeed.datasets.readers import source_filesystem
from rayspeed.datasets.rows import SPLIT_CODES, SPLIT_FLAGS, hash_key, split_codes
from rayspeed.datasets.tokenizing import TextTransform, Tokenizer, text_transform
from rayspeed.errors import DataError

TOKENS = "tokens"


def read_documents(data: DataConfig, *, seed: int) -> ray.data.Dataset:
    """Lazily reads every file (`bytes`, `path`), in a new order on every pass."""
    filesystem, root = source_filesystem(data.source)
    extensions = [suffix.lstrip(".") for suffix in data.texts.suffixes] or None
    try:
        return ray.data.read_binary_files(root, filesystem=filesystem, include_paths=True, file_extensions=extensions,
                                          shuffle=FileShuffleConfig(seed=seed, reseed_after_execution=True))
    except (FileNotFoundError, OSError, ValueError) as error:
        raise DataError(f"data.source: cannot read {data.source!r}: {error}") from error


def fit_text(data: DataConfig) -> TextTransform:
    """The tokenizer and block length (nothing in text needs the train split's statistics)."""
    def read_file(path: str) -> str:
        filesystem, name = source_filesystem(path)
        with filesystem.open_input_stream(name) as stream:
            return stream.read().decode("utf-8")

    return text_transform(data.texts.tokenizer, block_size=data.texts.block_size, read_file=read_file)


def tag_blocks(batch: dict, *, transform: TextTransform, split: SplitFractions, seed: int) -> dict:
    """The batch's files as blocks of `block_size` + 1 tokens (int32 `tokens`) with `_hash`, `_split`
    and the split flags. A file that is not UTF-8 becomes one row flagged `_bad` whose `_bad_value`
    names it (the driver fails the run: an error raised here would lose its message)."""
    documents, bad = [], []
    for content, path in zip(batch["bytes"], batch["path"], strict=True):
        try:
            documents.append(bytes(content).decode("utf-8"))
        except UnicodeDecodeError as error:
            bad.append(f"{path}: not UTF-8 text (byte {error.start} is {bytes(content)[error.start]:#04x})")
    stream = []
    for ids in Tokenizer(transform).encode(documents):
        stream += ids
        stream.append(transform.end_of_document)
    width = transform.block_size + 1
    blocks = np.asarray(stream[:len(stream) // width * width], dtype=np.int32).reshape(-1, width)
    blocks = np.concatenate([blocks, np.zeros((len(bad), width), dtype=np.int32)])
    digests = pd.util.hash_pandas_object(pd.Series([block.tobytes() for block in blocks], dtype=object),
                                         index=False, hash_key=hash_key(seed)).to_numpy()
    is_bad = np.arange(len(blocks)) >= len(blocks) - len(bad)
    codes = split_codes((digests >> np.uint64(11)).astype(np.float64) / float(2**53), split)
    described = np.asarray([""] * (len(blocks) - len(bad)) + bad, dtype=object)
    return {TOKENS: blocks, "_hash": (digests >> np.uint64(1)).astype(np.int64), "_split": codes,
            "_bad": is_bad.astype(np.int8), "_bad_value": described,
            **{flag: ((codes == SPLIT_CODES[name]) & ~is_bad).astype(np.int8) for name, flag in SPLIT_FLAGS.items()}}


def block_rows(batch: dict, *, preprocessing) -> dict[str, np.ndarray]:
    """Model rows: `features` (the block's tokens: inputs are all but the last, targets all but the
    first) and `row_hash`."""
    return {"features": batch[TOKENS].astype(np.int32), "row_hash": batch["_hash"].astype(np.int64)}
