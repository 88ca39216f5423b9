"""The analysis side: statistics across seeds, the tables and figures of ``collect`` and ``report``."""
