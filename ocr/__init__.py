"""Recognition core: data, CRNN/CTC training, decoding, metrics, reports and export.

Knows nothing of Streamlit or the database: callers pass callbacks.
"""

__version__ = "0.1.0"
