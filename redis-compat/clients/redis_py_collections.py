#!/usr/bin/env python3
"""Lists, sets and sorted sets as applications use them, through redis-py, RESP2 and RESP3.

Usage: redis_py_collections.py PORT

- A sliding-window rate limiter (ZREMRANGEBYSCORE, ZCARD, ZADD, PEXPIRE in one MULTI): however
  many threads call it at once, no window ever lets more than LIMIT requests through, and
  calls made one after another get exactly LIMIT through.
- A leaderboard (ZINCRBY from many threads, ZRANGE … REV WITHSCORES, ZREVRANK, ZSCORE,
  ZCOUNT): equal to a model of the increments.
- A work queue (LPUSH by producers, BRPOP by consumers, as Celery's and Sidekiq's brokers do):
  every job delivered exactly once.
- Tags (SADD, SINTER, SUNION, SISMEMBER, SCARD).
Prints OK on success. Only 127.0.0.1.
"""
import sys
import threading
import time
import uuid

import redis

LIMIT = 10
WINDOW_MS = 60_000


class SlidingWindowLimiter:
    """At most `limit` calls per `window_ms`, counted in a sorted set of call times."""

    def __init__(self, r, key, limit, window_ms):
        self.r, self.key, self.limit, self.window_ms = r, key, limit, window_ms

    def allow(self):
        now = int(time.time() * 1000)
        member = f"{now}-{uuid.uuid4().hex}"
        with self.r.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.key, 0, now - self.window_ms)
            pipe.zcard(self.key)
            pipe.zadd(self.key, {member: now})
            pipe.pexpire(self.key, self.window_ms)
            _, before, _, _ = pipe.execute()
        if before < self.limit:
            return True
        # Over the limit: this call does not count.
        self.r.zrem(self.key, member)
        return False


def rate_limiter(r, p):
    key = p + "ratelimit:user:1"
    r.delete(key)
    limiter = SlidingWindowLimiter(r, key, LIMIT, WINDOW_MS)
    assert [limiter.allow() for _ in range(LIMIT + 5)] == [True] * LIMIT + [False] * 5
    assert r.zcard(key) == LIMIT
    assert 0 < r.pttl(key) <= WINDOW_MS
    # Many callers at once: never more than LIMIT through.
    key = p + "ratelimit:user:2"
    r.delete(key)
    allowed = []
    guard = threading.Lock()

    def caller(port, protocol):
        mine = SlidingWindowLimiter(client(port, protocol), key, LIMIT, WINDOW_MS)
        for _ in range(5):
            ok = mine.allow()
            with guard:
                allowed.append(ok)

    port = r.connection_pool.connection_kwargs["port"]
    protocol = r.connection_pool.connection_kwargs.get("protocol", 2)
    threads = [threading.Thread(target=caller, args=(port, protocol)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0 < sum(allowed) <= LIMIT, sum(allowed)
    assert r.zcard(key) == sum(allowed)


def leaderboard(r, p):
    key = p + "leaderboard"
    r.delete(key)
    model = {}
    guard = threading.Lock()
    port = r.connection_pool.connection_kwargs["port"]
    protocol = r.connection_pool.connection_kwargs.get("protocol", 2)

    def player(me):
        c = client(port, protocol)
        for round_ in range(30):
            name = f"player:{(me * 7 + round_) % 12}"
            points = (me + round_) % 5 + 1
            c.zincrby(key, points, name)
            with guard:
                model[name] = model.get(name, 0) + points

    threads = [threading.Thread(target=player, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Highest score first; equal scores in reverse member order, as ZRANGE … REV lists them.
    expected = sorted(model.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    top = r.zrange(key, 0, 4, desc=True, withscores=True)
    assert [(m, int(s)) for m, s in top] == expected[:5], (top, expected[:5])
    for rank, (name, score) in enumerate(expected):
        assert r.zrevrank(key, name) == rank
        assert r.zscore(key, name) == score
    assert r.zcount(key, 10, "+inf") == sum(1 for _, s in expected if s >= 10)
    assert r.zcard(key) == len(model)


def work_queue(r, p):
    queue = p + "queue"
    r.delete(queue)
    jobs = [f"job-{i}" for i in range(200)]
    delivered = []
    guard = threading.Lock()
    port = r.connection_pool.connection_kwargs["port"]
    protocol = r.connection_pool.connection_kwargs.get("protocol", 2)
    done = threading.Event()

    def consumer():
        c = client(port, protocol)
        while not done.is_set():
            got = c.brpop([queue, p + "other"], timeout=1)
            if got is None:
                continue
            source, job = got
            assert source == queue, source
            with guard:
                delivered.append(job)

    consumers = [threading.Thread(target=consumer) for _ in range(4)]
    for thread in consumers:
        thread.start()
    for i in range(0, len(jobs), 20):
        r.lpush(queue, *jobs[i:i + 20])
    deadline = time.monotonic() + 30
    while True:
        with guard:
            if len(delivered) >= len(jobs):
                break
        assert time.monotonic() < deadline, f"{len(delivered)} of {len(jobs)} jobs delivered"
        time.sleep(0.01)
    done.set()
    for thread in consumers:
        thread.join()
    assert sorted(delivered) == sorted(jobs), "every job delivered exactly once"
    assert r.llen(queue) == 0


def tags(r, p):
    a, b = p + "tags:post:1", p + "tags:post:2"
    r.delete(a, b)
    assert r.sadd(a, "rust", "redis", "raft") == 3
    assert r.sadd(b, "redis", "python") == 2
    assert r.sinter(a, b) == {"redis"}
    assert r.sunion(a, b) == {"rust", "redis", "raft", "python"}
    assert r.sismember(a, "raft") and not r.sismember(b, "raft")
    assert r.scard(a) == 3
    assert r.smove(a, b, "raft") and r.scard(b) == 3


def client(port, protocol):
    return redis.Redis(host="127.0.0.1", port=port, protocol=protocol, decode_responses=True,
                       socket_timeout=30)


def main():
    port = int(sys.argv[1])
    for protocol in (2, 3):
        r = client(port, protocol)
        p = f"py{protocol}:"
        rate_limiter(r, p)
        leaderboard(r, p)
        work_queue(r, p)
        tags(r, p)
    print("OK")


if __name__ == "__main__":
    main()
