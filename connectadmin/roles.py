"""The three roles of SPEC §1, as Django groups (created by migration 0002).

Only the admin group holds `connectadmin.send_live` by default: a live import reaches
real contacts, so a marketer gets it only when an admin grants it (to the user, or to the
marketer group if the whole team should have it).
"""

from enum import StrEnum


class Role(StrEnum):
    MARKETER = "marketer"
    OPS = "ops"
    ADMIN = "admin"


# Check with user.has_perm(SEND_LIVE); superusers hold every permission.
SEND_LIVE = "connectadmin.send_live"
