"""A model leaving the project: export formats, the Hub folder and card, the browser demo, and the starter model."""

from pathlib import Path

STARTER = Path(__file__).parent / "starter"  # the model that ships with the project (python -m bench.starter)
