"""Optional login for the clinician interface: users from $MEDMM_USERS or an auth file.

Both hold `user:password` entries (comma- or newline-separated; `#` starts a comment line in a
file). A password may be given as a PBKDF2 hash, `pbkdf2_sha256$<iterations>$<salt hex>$<hash
hex>` (`python -m ui.auth USER` prints such a line), so that an auth file need not hold plain
passwords. Messages name the entry's position, never a user name or a password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from medmm.errors import ConfigError

ENV_USERS = "MEDMM_USERS"
HASH_PREFIX = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 200_000


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """A PBKDF2-SHA256 hash of `password` in the form an auth file accepts."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{HASH_PREFIX}${iterations}${salt.hex()}${digest.hex()}"


def parse_users(text: str, *, source: str = ENV_USERS) -> dict[str, str]:
    """user -> password (or hash) from `user:password` entries separated by commas or new lines."""
    users: dict[str, str] = {}
    entries = [e.strip() for line in text.splitlines() if not line.strip().startswith("#") for e in line.split(",")]
    for number, entry in enumerate((e for e in entries if e), start=1):
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError("expected user:password", path=source, where=f"entry {number}")
        if user.strip() in users:
            raise ConfigError("the same user is listed twice", path=source, where=f"entry {number}")
        if password.startswith(HASH_PREFIX + "$"):
            _check_hash(password, source, number)
        users[user.strip()] = password
    return users


def load_users(auth_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Users from `auth_file` (when given) and from $MEDMM_USERS; none means no login is asked for."""
    environ = os.environ if environ is None else environ
    users: dict[str, str] = {}
    if auth_file is not None:
        path = Path(auth_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"auth file cannot be read ({type(exc).__name__})", path=path) from exc
        users.update(parse_users(text, source=str(path)))
    if environ.get(ENV_USERS):
        for user, password in parse_users(environ[ENV_USERS]).items():
            if user in users:
                raise ConfigError("a user is defined both in the auth file and here", path=ENV_USERS)
            users[user] = password
    return users


def password_matches(stored: str, given: str) -> bool:
    """Constant-time check of a login password against a stored password or PBKDF2 hash."""
    if stored.startswith(HASH_PREFIX + "$"):
        _, iterations, salt, digest = stored.split("$")
        computed = hashlib.pbkdf2_hmac("sha256", given.encode(), bytes.fromhex(salt), int(iterations))
        return hmac.compare_digest(computed.hex(), digest)
    return hmac.compare_digest(stored.encode(), given.encode())


def make_checker(users: Mapping[str, str]) -> Callable[[str, str], bool]:
    """The login check Gradio calls with (user, password)."""
    table = dict(users)

    def check(user: str, password: str) -> bool:
        stored = table.get(user)
        return stored is not None and password_matches(stored, password)

    return check


class LoginThrottle:
    """Exponential back-off on wrong passwords, per user name and client address.

    Two counters grow with each failed sign-in: one for the (user name, client address) pair
    and one for the client address across all user names (against trying many names). After
    `free` failures of a counter (`free_per_address` for the address), each further failure
    doubles that counter's wait: base, 2 x base, 4 x base ... up to `cap` seconds. While
    either wait runs, sign-ins from that client for that user are refused without the password
    being checked (so timing says nothing), and refused attempts do not lengthen the wait. A
    success clears the pair's counter. The client address is the socket's peer, never a
    forwarded-for header, which a client could set to anything.
    """

    def __init__(
        self,
        *,
        free: int = 3,
        free_per_address: int = 10,
        base: float = 1.0,
        cap: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.free_per_address, self.base, self.cap = free, free_per_address, base, cap
        self.clock = clock
        self._failures: dict[tuple, tuple[int, float]] = {}  # key -> (failures, time the wait ends)
        self._lock = threading.Lock()

    def _wait(self, failures: int, free: int) -> float:
        return 0.0 if failures <= free else min(self.cap, self.base * 2.0 ** (failures - free - 1))

    def retry_after(self, user: str, address: str) -> float:
        """Seconds before this user may try again from this address (0: now)."""
        now = self.clock()
        with self._lock:
            ends = [self._failures.get(k, (0, 0.0))[1] for k in (("pair", user, address), ("address", address))]
        return max(0.0, max(ends) - now)

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:  # forget counters whose wait is over, so the table stays small
                self._failures = {k: v for k, v in self._failures.items() if v[1] > now}
            for key, free in ((("pair", user, address), self.free), (("address", address), self.free_per_address)):
                failures = self._failures.get(key, (0, 0.0))[0] + 1
                self._failures[key] = (failures, now + self._wait(failures, free))

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._failures.pop(("pair", user, address), None)


def _check_hash(value: str, source: str, number: int) -> None:
    parts = value.split("$")
    try:
        ok = (
            len(parts) == 4
            and int(parts[1]) > 0
            and len(bytes.fromhex(parts[2])) > 0
            and len(bytes.fromhex(parts[3])) == 32
        )
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"expected {HASH_PREFIX}$<iterations>$<salt hex>$<64 hex digits>", path=source, where=f"entry {number}"
        )


def main() -> None:
    """`python -m ui.auth USER`: ask for a password twice and print the auth-file line with its PBKDF2 hash."""
    import getpass
    import sys

    if len(sys.argv) != 2 or ":" in sys.argv[1] or "," in sys.argv[1]:
        raise SystemExit("usage: python -m ui.auth USER   (a user name without ':' or ',')")
    password = getpass.getpass("password: ")
    if not password or password != getpass.getpass("again: "):
        raise SystemExit("the passwords are empty or differ")
    print(f"{sys.argv[1]}:{hash_password(password)}")


if __name__ == "__main__":
    main()
