"""The training side: models, the Lightning module, batches, and fitting one run or a seed group."""
