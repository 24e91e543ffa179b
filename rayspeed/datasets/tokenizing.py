"""Tokenizers: UTF-8 bytes (built in), or a Hugging Face `tokenizers` JSON file. Both end every
document with one extra token, so blocks that span two documents show where one ends."""

import numpy as np

from rayspeed.config.text import BYTE_TOKENIZER
from rayspeed.datasets.preprocessing import TextTransform
from rayspeed.errors import DataError

BYTE_VOCABULARY = 256


class Tokenizer:
    """`encode` documents to token ids (without the end-of-document token) and `decode` them back."""

    def __init__(self, transform: TextTransform):
        self._strip_headers = transform.strip_headers
        self._json = None
        if transform.tokenizer_json is not None:
            from tokenizers import Tokenizer as HuggingFaceTokenizer

            self._json = HuggingFaceTokenizer.from_str(transform.tokenizer_json)

    def encode(self, documents: list[str]) -> list[np.ndarray]:
        """int32 token ids of each document (its body only, under `strip_headers`)."""
        if self._strip_headers:
            documents = [without_headers(document) for document in documents]
        if self._json is None:
            return [np.frombuffer(document.encode("utf-8"), dtype=np.uint8).astype(np.int32) for document in documents]
        return [np.asarray(encoding.ids, dtype=np.int32)
                for encoding in self._json.encode_batch(documents, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        if self._json is None:
            return bytes(i for i in ids if i < BYTE_VOCABULARY).decode("utf-8", errors="replace")
        return self._json.decode(ids)


def without_headers(document: str) -> str:
    """What follows the first empty line (an email's body after its headers); all of a document without one."""
    head, blank, body = document.replace("\r\n", "\n").partition("\n\n")
    return body if blank else head


def text_transform(tokenizer: str, *, block_size: int, read_file, strip_headers: bool = False) -> TextTransform:
    """The transform for `data.text.tokenizer`; `read_file(path) -> str` reads a tokenizer file
    (local or object storage) in the driver.

    Raises:
        DataError: the tokenizer file cannot be read or is not a `tokenizers` JSON.
    """
    if tokenizer == BYTE_TOKENIZER:
        return TextTransform(tokenizer=tokenizer, block_size=block_size, vocab_size=BYTE_VOCABULARY + 1,
                             strip_headers=strip_headers)
    from tokenizers import Tokenizer as HuggingFaceTokenizer

    try:
        content = read_file(tokenizer)
        size = HuggingFaceTokenizer.from_str(content).get_vocab_size(with_added_tokens=True)
    except Exception as error:  # an unreadable file, bad JSON, or tokenizers' own errors
        raise DataError(f"data.text.tokenizer: cannot load {tokenizer!r} as a Hugging Face tokenizer.json: "
                        f"{error}") from None
    return TextTransform(tokenizer=tokenizer, block_size=block_size, vocab_size=size + 1, tokenizer_json=content,
                         strip_headers=strip_headers)
