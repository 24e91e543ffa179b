"""Where Ray runs: an embedded local Ray or an existing cluster. Depends on `config` only."""

from rayspeed.cluster.local import connect

__all__ = ["connect"]
