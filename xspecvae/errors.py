"""The errors a user's input can cause: each names the file and the problem in one line, which
the command line prints alone (a genuine bug keeps its traceback)."""

from __future__ import annotations

import os

__all__ = ["InputError"]


class InputError(ValueError):
    """A file or argument that cannot be used, with its path and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
