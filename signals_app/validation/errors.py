"""The one exception of the readers: a file that cannot be read at all."""


class UnreadableFile(Exception):
    """The file cannot be read at all. str(exc) is one clear sentence saying what is wrong
    and where (byte offset or line), without the file name (the caller prepends it)."""
