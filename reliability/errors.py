"""Errors shown to users as they are: each names the file, field or value at fault."""


class UserFacingError(Exception):
    """An error whose message is meant for the user verbatim."""


class ConfigError(UserFacingError):
    """Bad configuration: the message names the file and the field."""
