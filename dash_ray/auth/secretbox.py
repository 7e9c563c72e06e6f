"""Secrets at rest: `SecretBox` encrypts small secrets (pipeline ingest secrets) with
authenticated encryption (Fernet: AES-128-CBC with HMAC-SHA256), and the key and token files
under `$DASH_HOME` are created here, atomically and with mode 0600.

Key rotation: give several keys, newest first (`DASH_SECRET_KEY="new,old"`, or one key a line
in the key file). Each stored secret decrypts with whichever key made it; new ones use the
first. Neither a key nor a secret ever appears in a `repr()` or an error message.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from dash_ray.errors import SecretKeyError

__all__ = ["SecretBox", "read_or_create_private_file"]


class SecretBox:
    """Encrypt and decrypt strings with the first of `keys`; decrypt with any of them.

    `source` says where the keys came from; errors name it. Thread-safe."""

    def __init__(self, keys: Sequence[str | bytes], *, source: str = "the keys given") -> None:
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be a sequence of keys, newest first, not one key")
        if not keys:
            raise SecretKeyError(f"no secret key in {source}")
        fernets = []
        for n, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # `from None`: the cause's message could quote the key.
                raise SecretKeyError(
                    f"key {n} of {source} is not a Fernet key "
                    "(32 bytes, url-safe base64; make one with SecretBox.generate_key())"
                ) from None
        self._fernet = MultiFernet(fernets)
        self._key_count = len(fernets)
        self.source = source

    @staticmethod
    def generate_key() -> str:
        """A new random key, in the form `SecretBox`, `DASH_SECRET_KEY` and key files take."""
        return Fernet.generate_key().decode("ascii")

    @classmethod
    def from_env_or_file(
        cls, env_value: str | None, key_file: Path, *, env_name: str = "DASH_SECRET_KEY"
    ) -> SecretBox:
        """Keys from `env_value` when set (comma-separated, newest first); else from
        `key_file` (one a line); else a new key written to `key_file` with mode 0600.
        The file is created atomically and never overwritten: when another process creates
        it at the same moment, its key is the one used."""
        if env_value is not None and env_value.strip():
            return cls(_split_keys(env_value), source=f"${env_name}")
        key_file = Path(key_file)
        text = read_or_create_private_file(key_file, cls.generate_key, what="secret key")
        return cls(_split_keys(text), source=f"key file {key_file}")

    def encrypt(self, plaintext: str) -> bytes:
        """The authenticated ciphertext of `plaintext` under the first key."""
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes, *, what: str = "a stored secret") -> str:
        """The plaintext of `ciphertext`. Raises SecretKeyError, naming `what` and the key
        source, when no key opens it (a different key, or tampered data)."""
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt {what} with the key from {self.source}: it was encrypted with "
                "another key or altered. Restore the key it was made with, or list that key "
                "after the new one to rotate."
            ) from None

    def __repr__(self) -> str:
        return f"SecretBox(source={self.source!r}, keys={self._key_count})"


def _split_keys(text: str) -> list[str]:
    # Fernet keys are url-safe base64: no commas or whitespace inside one.
    return [key for key in re.split(r"[\s,]+", text) if key]


def read_or_create_private_file(path: Path, make: Callable[[], str], *, what: str) -> str:
    """The stripped text of `path`; when the file does not exist, `make()` written there with
    mode 0600 (the folder is created too).

    Atomic: the text goes to a temporary file that is then hard-linked into place, so no one
    reads a half-written file, and when another process gets there first its file is kept and
    its text returned. An existing empty file is an error (SecretKeyError), not replaced."""
    try:
        return _read_private(path, what)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    text = make()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_private(path, what)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            return _create_exclusive(path, text, what)  # a filesystem without hard links
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return text


def _create_exclusive(path: Path, text: str, what: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_private(path, what)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())
    return text


def _read_private(path: Path, what: str) -> str:
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise SecretKeyError(f"{what} file {path} is empty")
    return text


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
