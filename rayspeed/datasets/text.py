"""Text in: plain-text files read whole by Ray Data (one file, one document); for language modelling,
tokenized and cut into fixed-length blocks, each tagged with its split and hash the way table rows are.

Each document is cut on its own, from its first token, so a block's content depends on its document
alone, never on which files Ray read together (which changes from pass to pass); each document's last
partial block is left out, and a document shorter than one block gives none. Blocks are split one by
one (by a hash of their tokens), not file by file, so a corpus of one file has val and test text too.
"""

import numpy as np
import ray.data
from ray.data import FileShuffleConfig
from ray.data.datasource import Partitioning

from rayspeed.config.data import DataConfig, SplitFractions
from rayspeed.datasets.readers import files_in_class_folders, source_filesystem
from rayspeed.datasets.rows import content_digests, split_tags
from rayspeed.datasets.tokenizing import TextTransform, Tokenizer, text_transform
from rayspeed.errors import DataError

TOKENS, LABEL = "tokens", "label"


def read_documents(data: DataConfig, *, seed: int) -> ray.data.Dataset:
    """Lazily reads every file (`bytes`, `path`; to classify, `label`: its class folder's name), in a
    new order on every pass.

    Raises:
        DataError: the source cannot be read; to classify, a file outside class folders.
    """
    filesystem, root = source_filesystem(data.source)
    extensions = [suffix.lstrip(".") for suffix in data.text.suffixes] or None
    partitioning = None
    if data.task == "classification":
        files_in_class_folders(filesystem, root, source=data.source, suffixes=tuple(data.text.suffixes),
                               what="documents")
        partitioning = Partitioning("dir", field_names=[LABEL], base_dir=root, filesystem=filesystem)
    try:
        return ray.data.read_binary_files(root, filesystem=filesystem, include_paths=True, file_extensions=extensions,
                                          partitioning=partitioning,
                                          shuffle=FileShuffleConfig(seed=seed, reseed_after_execution=True))
    except (FileNotFoundError, OSError, ValueError) as error:
        raise DataError(f"data.source: cannot read {data.source!r}: {error}") from error


def fit_text(data: DataConfig) -> TextTransform:
    """The tokenizer and block length (nothing in text needs the train split's statistics)."""
    def read_file(path: str) -> str:
        filesystem, name = source_filesystem(path)
        with filesystem.open_input_stream(name) as stream:
            return stream.read().decode("utf-8")

    return text_transform(data.text.tokenizer, block_size=data.text.block_size, read_file=read_file,
                          strip_headers=data.text.strip_headers)


def tag_blocks(batch: dict, *, transform: TextTransform, split: SplitFractions, seed: int) -> dict:
    """Each of the batch's files as blocks of `block_size` + 1 tokens (int32 `tokens`; the document's
    end-of-document token ends its last block when it fits) with `_hash`, `_split` and the split
    flags. A file that is not UTF-8 becomes one row flagged `_bad` whose `_bad_value` names it (the
    driver fails the run: an error raised here would lose its message)."""
    texts, problems = decode_utf8(batch)
    documents = [text for text in texts if text is not None]
    bad = [problem for problem in problems if problem is not None]
    width = transform.block_size + 1
    pieces = [np.zeros((0, width), dtype=np.int32)]
    for ids in Tokenizer(transform).encode(documents):
        ids = np.append(ids, np.int32(transform.end_of_document))
        whole = len(ids) // width
        pieces.append(ids[:whole * width].reshape(whole, width))
    blocks = np.concatenate([*pieces, np.zeros((len(bad), width), dtype=np.int32)])
    is_bad = np.arange(len(blocks)) >= len(blocks) - len(bad)
    described = np.asarray([None] * (len(blocks) - len(bad)) + bad, dtype=object)
    return {TOKENS: blocks, "_bad": is_bad.astype(np.int8), "_bad_value": described,
            **split_tags(content_digests([block.tobytes() for block in blocks], seed=seed), split, usable=~is_bad)}


def decode_utf8(batch: dict) -> tuple[list[str | None], list[str | None]]:
    """Each file's text (None when it is not UTF-8), and what is wrong with it (None when nothing is)."""
    texts, problems = [], []
    for content, path in zip(batch["bytes"], batch["path"], strict=True):
        try:
            texts.append(bytes(content).decode("utf-8"))
            problems.append(None)
        except UnicodeDecodeError as error:
            texts.append(None)
            problems.append(f"{path}: not UTF-8 text (byte {error.start} is {bytes(content)[error.start]:#04x})")
    return texts, problems


def block_rows(batch: dict, *, preprocessing) -> dict[str, np.ndarray]:
    """Model rows: `features` (the block's tokens: inputs are all but the last, targets all but the
    first) and `row_hash`."""
    return {"features": batch[TOKENS].astype(np.int32), "row_hash": batch["_hash"].astype(np.int64)}
