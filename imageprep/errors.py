"""Errors a user can act on. Each names the file (and line, where known) that caused it."""
from __future__ import annotations


class ProjectError(Exception):
    """A usage or project mistake: the command exits with code 2 and prints only this message."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return f"{where}{self.message}"
