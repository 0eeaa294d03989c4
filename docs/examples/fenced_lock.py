#!/usr/bin/env python3
"""A lock with a fencing token: redis-py's Lock, with an acquire script that also draws a token.

Usage: fenced_lock.py [PORT]   (default 6379; any node of a redraft cluster will do)

A lease lock alone cannot stop a holder that pauses (GC, swap, a slow disk) past its lease from
acting as if it still held the lock after someone else took it. A fencing token can: each
acquisition draws a number that only grows, and the protected resource refuses a write whose
token is lower than one it has already seen. Drawing the token must be atomic with taking the
lock, so FencedLock replaces redis-py's acquire (SET NX PX) with a script doing both; release,
extend and reacquire stay redis-py's own scripts. On redraft the counter is replicated and
never goes backwards, across failover and restarts, which is what makes the token sound.

The run below shows the case: A takes the lock (token 1) and stalls past its lease; B takes it
(token 2) and writes; A wakes and writes with token 1: the resource refuses. Prints OK.
"""
import sys
import time

import redis
from redis.lock import Lock


class FencedLock(Lock):
    """redis-py's Lock whose acquire also draws a fencing token (`self.token_number`)."""

    ACQUIRE = """
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
        return redis.call('INCR', KEYS[2])
    end
    return false
    """

    def __init__(self, client, name, timeout, **kwargs):
        if not timeout:
            raise ValueError("a fenced lock needs a lease (timeout)")
        super().__init__(client, name, timeout=timeout, **kwargs)
        self.fence_key = f"{name}:fence"
        self.token_number = None
        self._acquire_script = client.register_script(self.ACQUIRE)

    def do_acquire(self, token):
        lease_ms = int(self.timeout * 1000)
        drawn = self._acquire_script(keys=[self.name, self.fence_key], args=[token, lease_ms])
        if drawn is None:
            return False
        self.token_number = int(drawn)
        return True


class Storage:
    """The protected resource: it remembers the highest token it has seen and refuses lower."""

    def __init__(self):
        self.highest_token = 0
        self.value = None

    def write(self, token_number, value):
        if token_number < self.highest_token:
            raise PermissionError(f"stale fencing token {token_number} < {self.highest_token}")
        self.highest_token = token_number
        self.value = value


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    r = redis.Redis(host="127.0.0.1", port=port)
    name = f"example:lock:{time.time_ns()}"
    storage = Storage()

    a = FencedLock(r, name, timeout=0.5)
    assert a.acquire(blocking=False)
    print(f"A holds the lock with token {a.token_number}")
    # A stalls past its lease...
    deadline = time.monotonic() + 10
    while r.exists(name):
        assert time.monotonic() < deadline, "the lease ran out"
        time.sleep(0.05)

    b = FencedLock(r, name, timeout=10)
    assert b.acquire(blocking=False)
    print(f"B holds the lock with token {b.token_number}")
    assert b.token_number > a.token_number
    storage.write(b.token_number, "written by B")

    # ...and wakes up, still believing it holds the lock.
    try:
        storage.write(a.token_number, "written by A")
        raise AssertionError("the stale write was accepted")
    except PermissionError as refused:
        print(f"A's write refused: {refused}")
    assert storage.value == "written by B"
    b.release()
    print("OK")


if __name__ == "__main__":
    main()
