"""``python -m ocr``: the command line."""
