"""Encryption at rest of the most identifying fields a patient gives: date of birth and email.

Each value is stored as "<key id>:<Fernet token>" (cryptography's Fernet: AES-128-CBC with an
HMAC-SHA256, a random IV per value), so a stolen database or backup shows neither, and every
value names the key that sealed it. Keys come from FIELD_ENCRYPTION_KEYS, "id:key,id:key,...":
the first seals new values, all of them open old ones, so a key is rotated by putting a new one
first, running `ringback rotate-field-keys` (it re-seals every value with the first key), then
dropping the old one.

Only these fields: they are never searched for (a Fernet token differs every time, so a sealed
column cannot be compared in SQL). Message bodies, which the console, the outbox and the
reports do read in SQL, are instead removed after the clinic's retention period.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text, TypeDecorator, text

from booking.settings import get_settings


class FieldKeyError(ValueError):
    """A key list that cannot be used, or a value sealed with a key that is not configured."""


class KeyRing:
    def __init__(self, spec: str):
        self._keys: dict[str, Fernet] = {}
        for item in (part.strip() for part in spec.split(",") if part.strip()):
            key_id, separator, key = item.partition(":")
            if not separator or not key_id.isalnum() or key_id in self._keys:
                raise FieldKeyError("FIELD_ENCRYPTION_KEYS must be 'id:key,...' with unique, "
                                    "alphanumeric ids")
            try:
                self._keys[key_id] = Fernet(key.encode())
            except ValueError as exc:
                raise FieldKeyError(f"FIELD_ENCRYPTION_KEYS: key {key_id!r} is not a Fernet key "
                                    "(32 url-safe base64-encoded bytes)") from exc
        if not self._keys:
            raise FieldKeyError("FIELD_ENCRYPTION_KEYS holds no key")
        self.current_id = next(iter(self._keys))

    def seal(self, text: str) -> str:
        return f"{self.current_id}:{self._keys[self.current_id].encrypt(text.encode()).decode()}"

    def open(self, stored: str) -> str:
        key_id, _, token = stored.partition(":")
        key = self._keys.get(key_id)
        if key is None:
            raise FieldKeyError(f"a value is sealed with key {key_id!r}, which "
                                "FIELD_ENCRYPTION_KEYS does not hold")
        try:
            return key.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise FieldKeyError(f"a value under key {key_id!r} does not open with it") from exc

    @staticmethod
    def key_id_of(stored: str) -> str:
        return stored.partition(":")[0]


@lru_cache(maxsize=4)
def _ring(spec: str) -> KeyRing:
    return KeyRing(spec)


def key_ring() -> KeyRing:
    return _ring(get_settings().field_encryption_keys)


class SealedText(TypeDecorator):
    """A string stored sealed; reads and writes through the ORM see the plain value."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else key_ring().seal(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else key_ring().open(value)


class SealedDate(TypeDecorator):
    """A date stored sealed (as its ISO text)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: date | None, dialect) -> str | None:
        return None if value is None else key_ring().seal(value.isoformat())

    def process_result_value(self, value: str | None, dialect) -> date | None:
        return None if value is None else date.fromisoformat(key_ring().open(value))


# Every sealed column, for rotation and for the migration that sealed the existing values.
SEALED_COLUMNS = (("contacts", "date_of_birth"), ("contacts", "email"),
                  ("patients", "date_of_birth"))


def rotate(connection) -> dict[str, int]:
    """Re-seal every value not under the current key with it; values already under it are left
    alone, so an interrupted rotation is finished by running it again. Per column, how many."""
    ring = key_ring()
    rotated = {}
    for table, column in SEALED_COLUMNS:
        stale = connection.execute(text(
            f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL "
            f"AND {column} NOT LIKE :current"), {"current": f"{ring.current_id}:%"}).all()
        for row_id, value in stale:
            connection.execute(text(f"UPDATE {table} SET {column} = :value WHERE id = :id"),
                               {"value": ring.seal(ring.open(value)), "id": row_id})
        rotated[f"{table}.{column}"] = len(stale)
    return rotated


def new_key() -> str:
    return Fernet.generate_key().decode()
