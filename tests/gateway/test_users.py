"""API keys -> users: file validation messages, Authorization parsing, reload on change."""

import hashlib
import os

import pytest

from runtime_components.gateway.errors import GatewayError
from runtime_components.gateway.users import UserDirectory, UsersFileError, load_users

TIERS = {"free", "gold"}

BAD_FILES = [
    ("users: 3", 'expected a mapping with a "users" list'),
    ("users: [{name: a, apiKey: short}]", "apiKey must be a string of at least 8 characters"),
    ("users: [{name: a, apiKey: key-aaaaaaaa, tier: platinum}]", 'tier "platinum" is not defined; tiers: free, gold'),
    ("users: [{name: a, apiKey: key-aaaaaaaa, role: x}]", "unknown field(s) role"),
    ("users: [{name: a}]", "give exactly one of apiKey and apiKeySha256"),
    ("users: [{name: a, apiKey: key-aaaaaaaa, apiKeySha256: abc}]", "give exactly one of apiKey and apiKeySha256"),
    ("users: [{name: a, apiKeySha256: abc}]", "apiKeySha256 must be 64 hex digits"),
    ("users: [{name: a, apiKey: key-aaaaaaaa}, {name: b, apiKey: key-aaaaaaaa}]", "already used by a"),
    ("users: [{apiKey: key-aaaaaaaa}]", "name must be a non-empty string"),
    ("users: [[1]", "users.yaml:1:12\n  YAML syntax error: expected ',' or ']', but got '<stream end>'"),
    ("users: []\nusers: []", "users.yaml:2:1: users\n  duplicate key `users`"),
]


@pytest.mark.parametrize("text,fragment", BAD_FILES)
def test_bad_users_files(tmp_path, text, fragment):
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(UsersFileError) as info:
        load_users(str(path), TIERS, None)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_users_file_names_the_file(tmp_path):
    with pytest.raises(UsersFileError, match=r"absent.yaml\n  cannot read the file: No such file or directory\n"
                                             r"  hint: check rateLimits.usersFile"):
        load_users(str(tmp_path / "absent.yaml"), TIERS, None)


AUTH = [
    ("Bearer key-alice-1", "alice", "gold"),
    ("bearer   key-bob-22  ", "bob", "free"),  # default tier
    (None, 401, "Missing API key"),
    ("Basic abc", 401, "Malformed Authorization header"),
    ("Bearer ", 401, "Malformed Authorization header"),
    ("Bearer key-nobody-0", 401, "Invalid API key"),
    ("Bearer key-carol-333", "carol", "gold"),  # stored as a SHA-256 digest
]


@pytest.mark.parametrize("header,expected,detail", AUTH)
def test_authenticate(tmp_path, header, expected, detail):
    path = tmp_path / "users.yaml"
    digest = hashlib.sha256(b"key-carol-333").hexdigest()
    path.write_text("users:\n- {name: alice, apiKey: key-alice-1, tier: gold}\n- {name: bob, apiKey: key-bob-22}\n"
                    f"- {{name: carol, apiKeySha256: {digest}, tier: gold}}\n")
    users = UserDirectory(str(path), TIERS, "free")
    if isinstance(expected, str):
        user = users.authenticate(header)
        assert (user.name, user.tier) == (expected, detail)
    else:
        with pytest.raises(GatewayError) as info:
            users.authenticate(header)
        assert info.value.status == expected and detail in info.value.message


def test_without_users_file_everyone_is_anonymous_in_default_tier():
    users = UserDirectory(None, TIERS, "free")
    assert not users.requires_key
    assert users.authenticate(None).tier == "free"


def test_reload_picks_up_new_keys_and_keeps_old_ones_on_a_broken_edit(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users: [{name: a, apiKey: key-aaaaaaaa}]\n")
    users = UserDirectory(str(path), TIERS, None)
    path.write_text("users: [{name: b, apiKey: key-bbbbbbbb}]\n")
    os.utime(path, (1, 1))
    assert users.reload_if_changed()
    assert users.authenticate("Bearer key-bbbbbbbb").name == "b"
    path.write_text("users: 7\n")
    os.utime(path, (2, 2))
    assert not users.reload_if_changed()
    assert "expected a mapping" in (users.last_error or "")
    assert users.authenticate("Bearer key-bbbbbbbb").name == "b"
