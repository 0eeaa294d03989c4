#!/usr/bin/env python3
"""python-redis-lock (PyPI `python-redis-lock`), unchanged, against a redraft cluster, across a
leader kill.

Usage: python_redis_lock.py PORT [PORT...]   (ports of nodes that stay up: followers)

python-redis-lock takes a lock with SET NX EX, and a waiter blocks in BLPOP on the lock's
signal list until the holder's release script (EVALSHA) pushes to it; extend and reset are
scripts too.
1. Its API: acquire, non-blocking acquire, a blocking acquire woken by the release (not by the
   lease), extend, locked, release of a lock not owned, reset.
2. Mutual exclusion (`lock_check.py`): WORKERS threads, each with its own connection to one of the ports, take
   one shared lock, draw a fencing token (INCR) inside it, and check that no one else is
   inside and that tokens grow. After SECTIONS_BEFORE critical sections it prints READY and
   waits for a line on stdin (the test kills the leader meanwhile), then runs SECTIONS_AFTER
   more.
Prints "OK <sections> <errors>" and exits 0 when every check held. Only 127.0.0.1.
"""
import sys
import threading
import time

import redis
import redis_lock

import lock_check

WORKERS = 4
SECTIONS_BEFORE = 30
SECTIONS_AFTER = 60
LEASE_S = 10


def client(port):
    return redis.StrictRedis(host="127.0.0.1", port=port, socket_timeout=30)


def check_api(r):
    name = "prl:api"
    first = redis_lock.Lock(r, name, expire=LEASE_S)
    assert first.acquire(blocking=False), "a free lock is acquired"
    assert first.locked()
    second = redis_lock.Lock(r, name, expire=LEASE_S)
    assert not second.acquire(blocking=False), "a held lock is not acquired"
    first.extend(LEASE_S * 2)
    assert r.ttl("lock:" + name) > LEASE_S, "extend added to the lease"
    try:
        second.release()
        raise AssertionError("releasing a lock someone else holds must fail")
    except redis_lock.NotAcquired:
        pass
    # A blocking acquire waits in BLPOP until the release signals it.
    releaser = threading.Timer(0.3, first.release)
    releaser.start()
    started = time.monotonic()
    assert second.acquire(blocking=True, timeout=LEASE_S), "blocking acquire succeeds"
    waited = time.monotonic() - started
    assert 0.25 <= waited < 5, f"woken by the release, not the lease ({waited:.2f} s)"
    releaser.join()
    second.release()
    assert not second.locked()
    third = redis_lock.Lock(r, name, expire=LEASE_S)
    assert third.acquire(blocking=False)
    third.reset()
    assert not third.locked(), "reset frees the lock"


def worker(me, port, shared):
    r = client(port)
    while not shared.stop.is_set():
        lock = redis_lock.Lock(r, "prl:shared", expire=LEASE_S)
        try:
            if not lock.acquire(blocking=True, timeout=LEASE_S):
                continue
        except redis.RedisError as err:
            shared.error(me, "acquire", err)
            time.sleep(0.1)
            continue
        shared.critical_section(me, r)
        try:
            lock.release()
        except (redis.RedisError, redis_lock.NotAcquired) as err:
            shared.error(me, "release", err)


def main():
    ports = [int(p) for p in sys.argv[1:]]
    check_api(client(ports[0]))
    shared = lock_check.run(ports, worker, "prl:fence", WORKERS, SECTIONS_BEFORE, SECTIONS_AFTER)
    fence = int(client(ports[0]).get("prl:fence"))
    assert fence >= shared.sections, (fence, shared.sections)
    print(f"OK {shared.sections} {shared.errors}")


if __name__ == "__main__":
    main()
