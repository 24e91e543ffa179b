"""Hyperparameter search: each Ray Tune trial is a full rayspeed run (`trainers.fit`)."""
