#!/usr/bin/env python3
"""Common application patterns through redis-py, sync and asyncio, RESP2 and RESP3.

Usage: redis_py_patterns.py PORT
Counters, SET NX EX locks, MULTI/EXEC, a WATCH retry loop, pipelines and (when the server
supports them) hashes. Prints OK on success. Only 127.0.0.1.
"""
import asyncio
import sys

import redis
import redis.asyncio as aioredis


def sync_patterns(port, protocol):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, decode_responses=True)
    p = f"py{protocol}:"
    r.delete(p + "counter", p + "lock", p + "balance", p + "spent")
    # Counters.
    assert r.incr(p + "counter") == 1
    assert r.incrby(p + "counter", 41) == 42
    assert r.decr(p + "counter") == 41
    assert r.get(p + "counter") == "41"
    # A lock: SET NX EX, only one holder.
    assert r.set(p + "lock", "owner-1", nx=True, ex=30) is True
    assert r.set(p + "lock", "owner-2", nx=True, ex=30) is None
    assert r.get(p + "lock") == "owner-1"
    assert r.set(p + "lock", "owner-1", xx=True, keepttl=True) is True
    # MULTI/EXEC through a transactional pipeline.
    r.set(p + "balance", 100)
    with r.pipeline(transaction=True) as pipe:
        pipe.decrby(p + "balance", 30).incrby(p + "spent", 30)
        assert pipe.execute() == [70, 30]
    # WATCH retry loop: optimistic check-and-set.
    def withdraw(pipe):
        balance = int(pipe.get(p + "balance"))
        pipe.multi()
        pipe.set(p + "balance", balance - 10)
    r.transaction(withdraw, p + "balance")
    assert r.get(p + "balance") == "60"
    # Pipelines without a transaction.
    with r.pipeline(transaction=False) as pipe:
        for _ in range(100):
            pipe.incr(p + "counter")
        results = pipe.execute()
    assert results == list(range(42, 142))
    # Errors come back as exceptions, the connection stays usable.
    r.set(p + "text", "abc")
    try:
        r.incr(p + "text")
        raise AssertionError("INCR on text must fail")
    except redis.ResponseError as err:
        assert "not an integer" in str(err)
    assert r.ping() is True


async def async_patterns(port, protocol):
    r = aioredis.Redis(host="127.0.0.1", port=port, protocol=protocol, decode_responses=True)
    p = f"aio{protocol}:"
    await r.delete(p + "counter")
    results = await asyncio.gather(*[r.incr(p + "counter") for _ in range(50)])
    assert sorted(results) == list(range(1, 51))
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(p + "counter").get(p + "counter")
        assert await pipe.execute() == [51, "51"]
    await r.aclose()


def main():
    port = int(sys.argv[1])
    for protocol in (2, 3):
        sync_patterns(port, protocol)
        asyncio.run(async_patterns(port, protocol))
    print("OK", flush=True)


if __name__ == "__main__":
    main()
