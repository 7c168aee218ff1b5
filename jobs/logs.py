"""One log format for the worker and its jobs (stdlib ``logging``): every line carries a UTC timestamp and a level,
including what libraries print, so a log read after the fact says when and how bad each thing was."""

from __future__ import annotations

import io
import logging
import sys
import time

FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s"
DATEFMT = "%Y-%m-%dT%H:%M:%S"


class _StreamToLog(io.TextIOBase):
    """A text stream whose lines become log records (for ``print`` and libraries that write to stdout/stderr)."""

    def __init__(self, logger: logging.Logger, level: int):
        self.logger, self.level, self.pending = logger, level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text.replace("\r", "\n")
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.log(self.level, line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.log(self.level, self.pending.rstrip())
        self.pending = ""


def setup(capture_prints: bool = False) -> None:
    """Log INFO and above to the process's stdout; with ``capture_prints``, stdout and stderr go through the log too."""
    stream = sys.__stdout__ if capture_prints else sys.stdout
    handler = logging.StreamHandler(stream)
    formatter = logging.Formatter(FORMAT, DATEFMT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if capture_prints:
        sys.stdout = _StreamToLog(logging.getLogger("output"), logging.INFO)
        sys.stderr = _StreamToLog(logging.getLogger("stderr"), logging.WARNING)
