"""Token key material: loaded from files or the environment, never from the repository.

With no keys configured, a key is generated on first start into the data
directory (mode 0600) so that `make run` works on a fresh machine.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from clickbus.config import Config, KeyConfig
from clickbus.errors import ConfigError
from clickbus.private_files import make_dirs
from clickbus.tokens import KEY_BYTES, Keyring, new_key

AUTO_KEY_FILE = "signing.key"


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_key(text: str) -> bytes:
    """Decode base64url key material of at least 32 bytes; raise ValueError otherwise."""
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if len(key) < KEY_BYTES:
        raise ValueError(f"shorter than {KEY_BYTES} bytes")
    return key


def load_keyring(config: Config) -> Keyring:
    """Build the keyring the configuration describes, creating the auto key if none is configured."""
    if not config.tokens.keys:
        key_id, key = _auto_key(config.data_dir / AUTO_KEY_FILE)
        return Keyring({key_id: key}, key_id)
    keys, problems = {}, []
    for i, spec in enumerate(config.tokens.keys):
        if spec.retired:
            continue
        try:
            keys[spec.id] = decode_key(_read_material(spec))
        except (OSError, ValueError) as exc:
            problems.append(f"tokens.keys[{i}] ({spec.id}): {exc}")
    if problems:
        raise ConfigError(problems)
    assert config.tokens.signing_key is not None  # config validation guarantees it
    return Keyring(keys, config.tokens.signing_key)


def _read_material(spec: KeyConfig) -> str:
    if spec.file is not None:
        return spec.file.read_text(encoding="ascii")
    value = os.environ.get(spec.env or "")
    if value is None:
        raise ValueError(f"environment variable {spec.env} is not set")
    return value


def _auto_key(path: Path) -> tuple[str, bytes]:
    """Read `key_id:key` from `path`, generating it atomically if it does not exist."""
    if not path.exists():
        make_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"auto-{secrets.token_hex(3)}:{encode_key(new_key())}\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: keep theirs
            os.link(tmp, path)
        tmp.unlink()
    key_id, _, material = path.read_text(encoding="ascii").strip().partition(":")
    try:
        return key_id, decode_key(material)
    except ValueError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
