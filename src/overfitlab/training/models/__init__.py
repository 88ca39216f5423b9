"""The model families, one per file (the torchvision way); shared parts in ``layers.py``.

A config names its family's class by ``_target_`` (``overfitlab.training.models.mlp.MLP``).
"""
