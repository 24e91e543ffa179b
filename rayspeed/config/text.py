"""`data.text`: how plain-text files become token blocks for language modelling."""

from pydantic import Field, field_validator

from rayspeed.config.section import Section

BYTE_TOKENIZER = "bytes"


class TextConfig(Section):
    """Each file is one document, tokenized. Language modelling: the document is ended with an
    end-of-document token and cut from its first token into blocks of `block_size` + 1 tokens (a model
    reads `block_size` and predicts the next token at each position); its last partial block is left
    out. Classification: the document's first `block_size` tokens are one row, the end-of-document
    token filling the rest."""

    tokenizer: str = BYTE_TOKENIZER
    """`bytes` (UTF-8 bytes: 256 tokens plus end of document), or the path of a Hugging Face
    `tokenizers` JSON file (tokenizer.json), read once in the driver and saved with the run."""
    block_size: int = Field(128, ge=2, le=65536)
    """Tokens a model reads at once (its context length)."""
    strip_headers: bool = False
    """Read each document from after its first empty line (an email's body, without its headers)."""
    suffixes: list[str] = []
    """Only files ending in one of these are read (e.g. [".txt"]); default: every file."""

    @field_validator("suffixes")
    @classmethod
    def _dotted(cls, suffixes: list[str]) -> list[str]:
        if bad := [s for s in suffixes if not s.startswith(".")]:
            raise ValueError(f"suffixes start with a dot, like '.txt'; got {bad}")
        return suffixes
