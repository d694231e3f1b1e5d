"""One error type for bad input data, so that every message has the same three parts."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input: says which file, what is wrong with it, and how to fix it."""

    def __init__(self, path: str | Path, problem: str, fix: str):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}\n  fix: {fix}")
