"""Errors that carry a message meant for the user."""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do. The CLI prints it and exits 2."""


class ScanCancelled(Exception):
    """A scan stopped between chunks because its caller asked it to."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe(error: BaseException) -> str:
    """One line for the user: a ``UserError`` as it is, anything else by type and first line."""
    if isinstance(error, UserError):
        return str(error)
    return f"{type(error).__name__}: {first_line(error)}"
