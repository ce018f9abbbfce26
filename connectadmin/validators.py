"""Validators shared by models and forms."""

import re

from django.core.exceptions import ValidationError

SFTP_USER_MIN, SFTP_USER_MAX = 3, 100
_SFTP_USER_ALLOWED = re.compile(r"[A-Za-z0-9_.@-]")


def validate_sftp_user_name(value: str) -> None:
    """Connect's SFTP user name is the Connect user's e-mail address, with a narrower
    alphabet than e-mail allows (SPEC §8): 3–100 characters of letters, digits, _ - . @."""
    if not SFTP_USER_MIN <= len(value) <= SFTP_USER_MAX:
        raise ValidationError(
            "The Connect user e-mail is also the SFTP user name, which must be "
            "%(min)d–%(max)d characters long (this one has %(length)d).",
            code="sftp_user_length",
            params={"min": SFTP_USER_MIN, "max": SFTP_USER_MAX, "length": len(value)},
        )
    bad = sorted({char for char in value if not _SFTP_USER_ALLOWED.fullmatch(char)})
    if bad:
        raise ValidationError(
            "The Connect user e-mail is also the SFTP user name, which allows only letters, "
            "digits, _ - . and @; not %(bad)s. Use a Connect user without these characters.",
            code="sftp_user_characters",
            params={"bad": " ".join(repr(char) for char in bad)},
        )
