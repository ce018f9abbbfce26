"""Logging filters named in settings.LOGGING."""

import logging


class ClientErrorsInOneLine(logging.Filter):
    """Drops the traceback Django attaches when it logs a 4xx raised as an exception
    (PermissionDenied, BadRequest).

    Refusing an action is normal operation: the warning line ("Forbidden (Permission
    denied): /settings/sftp") says enough. A 5xx keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status_code = getattr(record, "status_code", None)
        if isinstance(status_code, int) and 400 <= status_code < 500:
            record.exc_info = None
            record.exc_text = None
        return True
