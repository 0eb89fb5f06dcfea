"""Errors that end a run with one clear line naming the field or file and what was expected."""

from __future__ import annotations


class LenspipeError(Exception):
    """Base class: the message is one line, meant for the user, never a traceback."""


class ConfigError(LenspipeError):
    """A config value is missing, of the wrong type or inconsistent; names the key."""

    def __init__(self, key: str, expected: str, got: object = None) -> None:
        self.key = key
        self.expected = expected
        got_text = "" if got is None else f" (got {got!r})"
        super().__init__(f"config error: {key}: expected {expected}{got_text}")


class DataError(LenspipeError):
    """A data file (store, image, checkpoint) is missing, damaged or of the wrong kind; names it."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"data error: {path}: {problem}")


class DeviceError(LenspipeError):
    """A GPU the job holds (or the config asks for) cannot be used; names the node and the reason."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"device error: {problem}")
