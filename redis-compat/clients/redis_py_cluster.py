#!/usr/bin/env python3
"""redis-py's RedisCluster against a redraft cluster, across a leader change.

Usage: redis_py_cluster.py PORT [PORT...]
Phase 1 increments a counter and writes keys through the cluster client; then it prints
READY and waits for a line on stdin (the test kills the leader meanwhile); phase 2 does the
same again, then checks every value. Prints OK and exits 0 on success. Only 127.0.0.1.
"""
import sys
import time

from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError


def connect(ports):
    return RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports],
        socket_timeout=5,
    )


def with_retry(action, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return action()
        except RedisError as err:
            if time.monotonic() > deadline:
                raise
            print(f"retrying after {type(err).__name__}: {err}", file=sys.stderr)
            time.sleep(0.2)


def main():
    ports = [int(p) for p in sys.argv[1:]]
    rc = connect(ports)
    acked = 0
    for i in range(50):
        with_retry(lambda i=i: rc.set(f"py:key:{i}", i))
        # An INCR is not idempotent: count only acknowledged ones and allow one more per retry.
        rc.incr("py:counter")
        acked += 1
    print("READY", flush=True)
    sys.stdin.readline()
    retried = 0
    for i in range(50, 100):
        with_retry(lambda i=i: rc.set(f"py:key:{i}", i))
        while True:
            try:
                rc.incr("py:counter")
                acked += 1
                break
            except RedisError as err:
                retried += 1
                print(f"INCR retry after {type(err).__name__}: {err}", file=sys.stderr)
                time.sleep(0.2)
                if retried > 200:
                    raise
    for i in range(100):
        value = with_retry(lambda i=i: rc.get(f"py:key:{i}"))
        assert value == str(i).encode(), (i, value)
    counter = int(with_retry(lambda: rc.get("py:counter")))
    assert acked <= counter <= acked + retried, (acked, counter, retried)
    slots = rc.cluster_slots(target_nodes=RedisCluster.RANDOM)
    assert slots, slots
    print("OK", flush=True)


if __name__ == "__main__":
    main()
