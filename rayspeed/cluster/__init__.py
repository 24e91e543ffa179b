"""Where Ray runs: an embedded local Ray or an existing cluster. Depends on `config` only."""

from rayspeed.cluster.connection import connect

__all__ = ["connect"]
