"""Errors whose message is one sentence for the user, shared by the library's modules.

In a module of its own so that ``python -m convattn.data`` (which runs data.py as
``__main__``, a second copy of it) catches the same class the other modules raise.
"""


class DataError(Exception):
    """A dataset that cannot be read; the message is one sentence for the user."""
