"""API keys -> users and tiers, from a file mounted from a Kubernetes Secret.

File format (YAML)::

    users:
      - name: alice
        apiKey: sk-alice-0123
        tier: gold          # optional; rateLimits.defaultTier when absent
      - name: bob
        apiKeySha256: 5e8848...   # or the key's SHA-256 (hex), so the Secret never holds the key

Keys are looked up by their SHA-256 digest, so a presented key is never compared byte by
byte with a stored one.
The file is re-read when its modification time or size changes (Secret updates reach the pod as a
new file). A broken file keeps the previous users and reports the error; at start-up it is
fatal with a message naming the file and the entry.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from runtime_components.common.config_file import ConfigFileError, read_yaml_file
from runtime_components.common.file_stamp import FileStamp, file_stamp

from .errors import unauthorized

__all__ = ["ANONYMOUS", "User", "UsersFileError", "UserDirectory", "key_digest", "load_users"]


@dataclass(frozen=True)
class User:
    name: str
    tier: str | None


ANONYMOUS = User("anonymous", None)


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file, the entry and the fix."""


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_users(path: str, tiers: set[str], default_tier: str | None) -> dict[str, User]:
    """Read ``path`` and return SHA-256(api key) -> User, validating every entry."""
    try:
        data = read_yaml_file(path, read_hint="check rateLimits.usersFile in the gateway config (a mounted Secret)")
    except ConfigFileError as exc:
        raise UsersFileError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise UsersFileError(f'{path}: expected a mapping with a "users" list of {{name, apiKey, tier}} entries')
    keys: dict[str, User] = {}
    for i, entry in enumerate(data["users"]):
        where = f"{path}: users[{i}]"
        if not isinstance(entry, dict):
            raise UsersFileError(f"{where}: expected a mapping with name, apiKey and tier")
        unknown = set(entry) - {"name", "apiKey", "apiKeySha256", "tier"}
        if unknown:
            raise UsersFileError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))}; expected name, apiKey or apiKeySha256, tier")
        name, tier = entry.get("name"), entry.get("tier", default_tier)
        if not isinstance(name, str) or not name:
            raise UsersFileError(f"{where}: name must be a non-empty string")
        if ("apiKey" in entry) == ("apiKeySha256" in entry):
            raise UsersFileError(f"{where} ({name}): give exactly one of apiKey and apiKeySha256")
        if "apiKey" in entry:
            plain = entry["apiKey"]
            if not isinstance(plain, str) or len(plain) < 8:
                raise UsersFileError(f"{where} ({name}): apiKey must be a string of at least 8 characters")
            key = key_digest(plain)
        else:
            key = str(entry["apiKeySha256"]).lower()
            if not _HEX64.match(key):
                raise UsersFileError(f"{where} ({name}): apiKeySha256 must be 64 hex digits (sha256sum of the key)")
        if tier is not None and tier not in tiers:
            known = ", ".join(sorted(tiers)) or "(no tiers defined in rateLimits.tiers)"
            raise UsersFileError(f'{where} ({name}): tier "{tier}" is not defined; tiers: {known}')
        if key in keys:
            raise UsersFileError(f"{where} ({name}): this apiKey is already used by {keys[key].name}")
        keys[key] = User(name, tier)
    return keys


class UserDirectory:
    """Resolves the Authorization header to a user; reloads the file when it changes."""

    def __init__(self, path: str | None, tiers: set[str], default_tier: str | None) -> None:
        self._path = path
        self._tiers = tiers
        self._default_tier = default_tier
        self._keys: dict[str, User] = {}
        self._stamp: FileStamp | None = None
        self.last_error: str | None = None
        if path is not None:
            self._keys = load_users(path, tiers, default_tier)
            self._stamp = file_stamp(path)

    @property
    def requires_key(self) -> bool:
        return self._path is not None

    def reload_if_changed(self) -> bool:
        """Re-read the file if its stamp moved; keep the old users if the new file is broken."""
        if self._path is None:
            return False
        try:
            stamp = file_stamp(self._path)
        except OSError as exc:
            self.last_error = f"{self._path}: {exc.strerror}"
            return False
        if stamp == self._stamp:
            return False
        try:
            self._keys = load_users(self._path, self._tiers, self._default_tier)
            self.last_error = None
        except UsersFileError as exc:
            self.last_error = str(exc)
            return False
        finally:
            self._stamp = stamp
        return True

    def authenticate(self, authorization: str | None) -> User:
        """Return the user for ``Authorization: Bearer KEY`` or raise a 401 GatewayError."""
        if self._path is None:
            return User(ANONYMOUS.name, self._default_tier)
        if not authorization:
            raise unauthorized("Missing API key; send it as the header Authorization: Bearer <key>")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise unauthorized("Malformed Authorization header; expected: Authorization: Bearer <key>")
        user = self._keys.get(key_digest(key.strip()))
        if user is None:
            raise unauthorized("Invalid API key; check the key or ask for one")
        return user
