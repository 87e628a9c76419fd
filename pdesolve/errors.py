"""The one exception type for user mistakes: the CLI shows its message and exits with status 2."""


class UserError(Exception):
    """Bad input from a user (a file, a key, a name): the message says where and what was expected."""
