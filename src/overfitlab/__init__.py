"""overfitlab: reproducible overfitting studies of image classifiers.

Nothing runs here: every package ``__init__`` is on the numerics' import path and so in each run's
code hash (``identity.numerics_code``). The config resolvers live in ``resolvers.py``.
"""

__version__ = "0.1.0"
