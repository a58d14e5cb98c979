"""Errors whose message is one sentence for the user, shared by the library's modules
(``convattn.files.checkpoint`` holds the checkpoint's own)."""


class DataError(Exception):
    """A dataset that cannot be read; the message is one sentence for the user."""


class FlagError(Exception):
    """A flag's value outside what the job accepts; the message is one sentence."""
