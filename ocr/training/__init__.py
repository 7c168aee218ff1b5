"""Training a model: its configuration, the loop, and self-training on the unlabelled pool."""
