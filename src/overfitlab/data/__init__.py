"""The data side: raw datasets, image folders, splits, randomization controls (stage ``prepare``)."""
