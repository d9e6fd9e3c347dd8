"""Login brute force, slowed: failure counters per user name and per client address.

A few failures are free (people mistype). Past them each further failure locks the key for a
delay that doubles, up to a cap; while a key is locked, attempts are refused at once without
looking at the password, so guessing gains nothing from speed. A success clears the user's and
the address's counters; a key quiet for `forget_after` is forgotten. The table is bounded: when
full, the key idle longest goes first (counted).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

Key = tuple[str, str]  # ("user", id) or ("addr", address)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_user: int = 5  # failures of one user name before delays start
    free_address: int = 20  # one address may be a whole office behind NAT
    base_delay: float = 1.0  # seconds after the first failure past the free ones
    max_delay: float = 900.0
    forget_after: float = 3600.0
    bound: int = 10_000


@dataclass(slots=True)
class _Entry:
    failures: int
    last: float
    locked_until: float


class LoginThrottle:
    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self.evicted = 0

    def wait(self, keys: Sequence[Key], now: float) -> float:
        """Seconds until these keys may try again; 0 when they may now."""
        longest = 0.0
        for key in keys:
            entry = self._live(key, now)
            if entry is not None:
                longest = max(longest, entry.locked_until - now)
        return longest

    def failed(self, keys: Sequence[Key], now: float) -> float:
        """Count a failure; the delay it starts (0 while still within the free ones)."""
        longest = 0.0
        for key in keys:
            entry = self._live(key, now) or _Entry(0, now, 0.0)
            entry.failures += 1
            entry.last = now
            excess = entry.failures - self._free(key)
            if excess > 0:
                delay = min(
                    self.policy.base_delay * 2 ** min(excess - 1, 30), self.policy.max_delay
                )
                entry.locked_until = now + delay
                longest = max(longest, delay)
            self._entries[key] = entry
            self._entries.move_to_end(key)
        while len(self._entries) > self.policy.bound:
            self._entries.popitem(last=False)
            self.evicted += 1
        return longest

    def succeeded(self, keys: Sequence[Key]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    def locked(self, now: float) -> int:
        """Keys locked right now, for health."""
        return sum(1 for e in self._entries.values() if e.locked_until > now)

    def _free(self, key: Key) -> int:
        return self.policy.free_user if key[0] == "user" else self.policy.free_address

    def _live(self, key: Key, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry.last >= self.policy.forget_after and now >= entry.locked_until:
            del self._entries[key]
            return None
        return entry
