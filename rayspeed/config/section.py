"""The base every config section derives from: frozen, strict about keys, documented fields."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen pydantic model; unknown keys are errors, field docstrings become the schema's docs."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
