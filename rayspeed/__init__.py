"""rayspeed: train PyTorch models with DeepSpeed on Ray from one YAML experiment file."""

__version__ = "0.1.0"
