#!/usr/bin/env python3
"""redis-py's Lock, unchanged, against a redraft cluster, across a leader kill.

Usage: redis_py_lock.py PORT [PORT...]   (ports of nodes that stay up: followers)

1. The Lock API: acquire, non-blocking and blocking acquire, extend, reacquire, locked, owned,
   release, and release of a lock no longer owned. Release, extend and reacquire are Lua
   scripts run by EVALSHA (redis-py loads them with SCRIPT LOAD on NOSCRIPT).
2. Mutual exclusion (`lock_check.py`): WORKERS threads, each with its own connection to one
   of the ports, repeatedly take one shared lock, draw a fencing token (INCR) inside it, and
   check that no one else is inside and that tokens only grow in the order holders enter.
   After SECTIONS_BEFORE critical sections it prints READY and waits for a line on stdin (the
   test kills the leader meanwhile), then runs SECTIONS_AFTER more.
Prints "OK <sections> <errors>" and exits 0 when every check held; an error reply or
exception seen by the application counts as an error. Only 127.0.0.1.
"""
import sys
import threading
import time

import redis
from redis.exceptions import LockError, LockNotOwnedError

import lock_check

WORKERS = 4
SECTIONS_BEFORE = 40
SECTIONS_AFTER = 80
LEASE_S = 10


def client(port):
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=15)


def check_api(r):
    name = "py:lock:api"
    # Released from another thread below: the token must not be thread-local.
    first = r.lock(name, timeout=LEASE_S, thread_local=False)
    assert first.acquire(blocking=False), "a free lock is acquired"
    assert first.locked() and first.owned()
    second = r.lock(name, timeout=LEASE_S)
    assert not second.acquire(blocking=False), "a held lock is not acquired"
    assert not second.owned()
    assert first.extend(5), "extend adds to the lease"
    assert r.pttl(name) > LEASE_S * 1000, "extend added to the TTL"
    assert first.reacquire(), "reacquire resets the lease"
    assert r.pttl(name) <= LEASE_S * 1000
    try:
        second.release()
        raise AssertionError("releasing a lock someone else holds must fail")
    except LockError:
        pass
    # A blocking acquire waits for the holder's release.
    releaser = threading.Timer(0.3, first.release)
    releaser.start()
    started = time.monotonic()
    assert second.acquire(blocking=True, blocking_timeout=10), "blocking acquire succeeds"
    waited = time.monotonic() - started
    assert 0.25 <= waited < 5, f"it waited for the release, not the lease ({waited:.2f} s)"
    releaser.join()
    second.release()
    assert not r.exists(name)
    try:
        second.release()
        raise AssertionError("releasing a released lock must fail")
    except LockError:
        pass
    # A lease runs out: the lock is free again, and the old holder no longer owns it.
    short = r.lock(name, timeout=0.2)
    assert short.acquire(blocking=False)
    deadline = time.monotonic() + 5
    while r.exists(name):
        assert time.monotonic() < deadline, "the lease expired"
        time.sleep(0.05)
    assert not short.owned()
    try:
        short.extend(1)
        raise AssertionError("extending an expired lock must fail")
    except LockNotOwnedError:
        pass
    # Someone else took it meanwhile: the old holder's release script refuses.
    taker = r.lock(name, timeout=LEASE_S)
    assert taker.acquire(blocking=False)
    try:
        short.release()
        raise AssertionError("releasing a lock taken over must fail")
    except LockNotOwnedError:
        pass
    assert taker.owned()
    taker.release()


def worker(me, port, shared):
    r = client(port)
    while not shared.stop.is_set():
        lock = r.lock("py:lock:shared", timeout=LEASE_S, blocking_timeout=60)
        try:
            if not lock.acquire():
                with shared.guard:
                    shared.errors += 1
                continue
        except redis.RedisError as err:
            shared.error(me, "acquire", err)
            time.sleep(0.1)
            continue
        shared.critical_section(me, r)
        try:
            lock.release()
        except (redis.RedisError, LockError) as err:
            shared.error(me, "release", err)


def main():
    ports = [int(p) for p in sys.argv[1:]]
    check_api(client(ports[0]))
    shared = lock_check.run(ports, worker, "py:lock:fence", WORKERS, SECTIONS_BEFORE,
                            SECTIONS_AFTER)
    fence = int(client(ports[0]).get("py:lock:fence"))
    assert fence >= shared.sections, (fence, shared.sections)
    print(f"OK {shared.sections} {shared.errors}")


if __name__ == "__main__":
    main()
