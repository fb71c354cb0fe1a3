"""A small per-process cache with a time limit, for hot read paths.

Entries expire after `ttl` seconds, so a change made by another process is
seen within that time; a change made in this process clears the entry at once
(callers hook `clear` to signals). Thread-safe; bounded in size.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LocalTTLCache:
    def __init__(self, *, ttl: Callable[[], float], max_entries: int = 1024) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_set(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        ttl = self._ttl()
        if ttl <= 0:
            return compute()
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and entry[0] > now:
                return entry[1]
        value = compute()
        if value is not None:
            with self._lock:
                self._data[key] = (now + ttl, value)
                self._data.move_to_end(key)
                while len(self._data) > self._max:
                    self._data.popitem(last=False)
        return value

    def clear(self, key: Hashable | None = None) -> None:
        with self._lock:
            if key is None:
                self._data.clear()
            else:
                self._data.pop(key, None)
