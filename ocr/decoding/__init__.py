"""Logits to text: CTC greedy and beam decoding, the decoder's configuration, character language models, lexicons."""
