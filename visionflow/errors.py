"""Errors that mean bad input (config or data), as opposed to a bug or a transient failure."""

from visionflow.config import ConfigError


class DataError(ValueError):
    """Bad data: the message names the file and the record."""


USER_ERRORS = (ConfigError, DataError, FileNotFoundError)
