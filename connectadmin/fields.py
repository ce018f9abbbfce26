"""Model fields."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import IsNull, Lookup

from connectadmin import secrets


class EncryptedTextField(models.TextField):
    """Text encrypted at rest: the column holds a Fernet token, Python sees the plaintext.

    Tokens are salted, so equal secrets never compare equal in SQL: every lookup except
    `isnull` is refused rather than silently matching nothing.
    """

    description = "Text encrypted at rest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("unique") or kwargs.get("db_index") or kwargs.get("primary_key"):
            raise ValueError("An encrypted field cannot be unique, indexed or a primary key.")
        super().__init__(*args, **kwargs)

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        # Expressions (update() passes them here too) are compiled on their own: a Value
        # with this field as its output_field comes back here with the bare string.
        if value is None or hasattr(value, "resolve_expression"):
            return super().get_db_prep_save(value, connection)
        return super().get_db_prep_save(secrets.encrypt(str(value)), connection)

    def from_db_value(
        self, value: str | None, expression: Any, connection: BaseDatabaseWrapper
    ) -> str | None:
        return None if value is None else secrets.decrypt(value)

    # A dump (dumpdata, serializers) holds the token, never the plaintext; loading it back
    # decrypts it with the configured keys, and saving encrypts it again.
    DUMPED: Any = "fernet:"

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else self.DUMPED + secrets.encrypt(str(value))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(self.DUMPED):
            return secrets.decrypt(value[len(self.DUMPED) :])
        return super().to_python(value)

    def get_lookup(self, lookup_name: str) -> type[Lookup[Any]] | None:
        return IsNull if lookup_name == "isnull" else None
