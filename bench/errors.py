"""Exceptions shared across fdbench whose messages are meant for the user, not for a traceback."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input: the CLI prints it as one line and exits with status 2."""
