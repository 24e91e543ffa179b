"""Training: the Ray driver (`fit`), the per-worker DeepSpeed loop, checkpoints and metrics."""
