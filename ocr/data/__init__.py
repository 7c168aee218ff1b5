"""Where samples come from: the Kaggle layout and its import, synthetic and Kaggle downloads, the names tables,
augmentation and the training batches."""
