"""Errors every room raises: the ground floor, it imports nothing of xlexp."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the key at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


class StoreError(Exception):
    """A store that cannot go on (damaged and not healable, disk full): one line naming the file."""
