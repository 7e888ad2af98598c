"""Secrets at rest (providers' API keys): Fernet (AES-128-CBC + HMAC-SHA256) under one key.

The key is ``RUNYARD_SECRETS_KEY`` or, when unset, generated once into
``<data_dir>/secrets.key`` (mode 0600) and read on later starts. Replicas must share it:
what one encrypts, every other decrypts.
"""

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from runyard.settings import Settings

KEY_FILE = "secrets.key"


class SecretUnreadable(Exception):
    """A stored secret this server's key cannot decrypt (another key encrypted it)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretUnreadable("not encrypted with this server's secrets key") from exc


def load_secrets_key(settings: Settings) -> bytes:
    """``RUNYARD_SECRETS_KEY``, or the data directory's key file, made on first start; a
    ValueError that names where a malformed key came from (never the key itself).

    Concurrent first starts on one directory agree on one key: each writes its own candidate
    and links it into place only if no key is there yet."""
    if settings.secrets_key is not None:
        return _checked(settings.secrets_key.get_secret_value().encode(), "RUNYARD_SECRETS_KEY")
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        _create(path)
    return _checked(path.read_bytes().strip(), str(path))


def _checked(key: bytes, source: str) -> bytes:
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise ValueError(
            f"{source} is not a Fernet key (32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`). If secrets were stored, restore the key "
            "that encrypted them."
        ) from None
    return key


def _create(path: Path) -> None:
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another starter's key won
            os.link(candidate, path)
    finally:
        candidate.unlink(missing_ok=True)
