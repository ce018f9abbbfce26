class ImportRefused(Exception):
    """A plain-words reason the action cannot be done."""
