"""Login users from $MEDMM_USERS and an auth file; PBKDF2 hashes; messages that never echo a name or password."""

from __future__ import annotations

import hashlib

import pytest

from medmm.errors import ConfigError
from ui.auth import hash_password, load_users, make_checker, parse_users, password_matches


def test_users_from_the_environment_and_a_file(tmp_path):
    auth = tmp_path / "users.txt"
    auth.write_text("# clinicians\ncarol:s3cret:with:colons\n\ndave:pw2\n")
    users = load_users(auth, {"MEDMM_USERS": "alice:pw, bob:pw"})
    assert users == {"carol": "s3cret:with:colons", "dave": "pw2", "alice": "pw", "bob": "pw"}
    assert load_users(None, {}) == {}
    check = make_checker(users)
    assert check("alice", "pw") and check("carol", "s3cret:with:colons")
    assert not check("alice", "PW") and not check("mallory", "pw") and not check("bob", "")


def test_pbkdf2_hashes_match_hashlib_and_check_passwords():
    salt = bytes(range(16))
    stored = hash_password("correct horse", iterations=1000, salt=salt)
    want = hashlib.pbkdf2_hmac("sha256", b"correct horse", salt, 1000).hex()
    assert stored == f"pbkdf2_sha256$1000${salt.hex()}${want}"
    assert password_matches(stored, "correct horse") and not password_matches(stored, "correct horse ")
    assert make_checker(parse_users(f"erin:{stored}"))("erin", "correct horse")


@pytest.mark.parametrize(
    "text, where",
    [
        ("alice", "entry 1"),
        ("alice:pw,:pw", "entry 2"),
        ("alice:pw,alice:other", "entry 2"),
        ("zed:pbkdf2_sha256$x$00$00", "entry 1"),
    ],
)
def test_malformed_entries_are_named_by_position_without_their_values(text, where):
    with pytest.raises(ConfigError) as err:
        parse_users(text)
    assert err.value.where == where
    assert "alice" not in str(err.value) and "pw" not in str(err.value) and "zed" not in str(err.value)


def test_a_user_in_both_places_and_an_unreadable_file_are_errors(tmp_path):
    auth = tmp_path / "users.txt"
    auth.write_text("alice:one\n")
    with pytest.raises(ConfigError, match="both in the auth file"):
        load_users(auth, {"MEDMM_USERS": "alice:two"})
    with pytest.raises(ConfigError, match="auth file cannot be read"):
        load_users(tmp_path / "missing.txt", {})


def test_the_helper_prints_an_auth_file_line_that_logs_in(monkeypatch, capsys):
    import getpass
    import sys

    from ui.auth import main

    monkeypatch.setattr(sys, "argv", ["ui.auth", "frank"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "s3cret")
    main()
    line = capsys.readouterr().out.strip()
    assert line.startswith("frank:pbkdf2_sha256$") and "s3cret" not in line
    assert make_checker(parse_users(line))("frank", "s3cret")
    monkeypatch.setattr(sys, "argv", ["ui.auth", "a:b"])
    with pytest.raises(SystemExit):
        main()


def test_wrong_passwords_back_off_exponentially_per_user_and_address():
    from ui.auth import LoginThrottle

    now = [100.0]
    throttle = LoginThrottle(free=2, free_per_address=4, base=1.0, cap=8.0, clock=lambda: now[0])
    for _ in range(2):  # the first failures are free
        throttle.failed("alice", "10.0.0.1")
        assert throttle.retry_after("alice", "10.0.0.1") == 0.0
    waits = []
    for _ in range(5):
        throttle.failed("alice", "10.0.0.1")
        waits.append(throttle.retry_after("alice", "10.0.0.1"))
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    assert (
        throttle.retry_after("alice", "10.0.0.2") == 0.0
    )  # the same user from elsewhere is not locked out by this client
    now[0] += 8.0
    assert throttle.retry_after("alice", "10.0.0.1") == 0.0
    throttle.succeeded("alice", "10.0.0.1")  # clears the pair's count, not the address's
    throttle.failed("alice", "10.0.0.1")  # pair: 1 failure (free); address: 8 failures, 4 free -> 2 ** 3 s, capped at 8
    assert throttle.retry_after("alice", "10.0.0.1") == 8.0


def test_one_address_trying_many_user_names_is_throttled_too():
    from ui.auth import LoginThrottle

    throttle = LoginThrottle(free=3, free_per_address=4, base=2.0, cap=60.0, clock=lambda: 0.0)
    for name in ("a", "b", "c", "d", "e"):
        throttle.failed(name, "10.0.0.9")
    assert throttle.retry_after("zed", "10.0.0.9") == 2.0  # a name never tried before, from the same address
    assert throttle.retry_after("zed", "10.0.0.8") == 0.0
