"""Errors that carry a message meant for the user."""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do. The CLI prints it and exits 2."""


class ScanCancelled(Exception):
    """A scan stopped between chunks because its caller asked it to."""
