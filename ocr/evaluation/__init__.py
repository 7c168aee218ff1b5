"""How well a model reads: metrics as sums, a dataset evaluation and its report."""
