#!/usr/bin/env python3
"""redis-py's Pub/Sub, unchanged, with its subscribers on one node and publishers on another.

Usage: redis_py_pubsub.py SUBSCRIBER_PORT PUBLISHER_PORT

For RESP2 and RESP3:
- PubSub.get_message: channel and pattern subscriptions, every message once and in order;
- handlers run by PubSub.run_in_thread, as apps wire callbacks;
- redis.asyncio's PubSub.listen;
- PUBLISH's count, PUBSUB NUMSUB and NUMPAT as subscriptions come and go.
Prints OK on success. Only 127.0.0.1.
"""
import asyncio
import sys
import threading
import time

import redis
import redis.asyncio

COUNT = 200


def next_message(pubsub, timeout=10.0):
    """The next message (not a subscription confirmation), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            return message
    raise AssertionError("no message within %.0f s" % timeout)


def wait_for_receivers(publisher, channel, expected, timeout=10.0):
    """Publishes probes until one reaches `expected` subscribers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publisher.publish(channel, "probe") == expected:
            return
        time.sleep(0.05)
    raise AssertionError("PUBLISH %s never reached %d subscribers" % (channel, expected))


def skip_probes(pubsub):
    """The next message that is not a probe."""
    while True:
        message = next_message(pubsub)
        if message["data"] != "probe":
            return message


def get_message_in_order(sub_port, pub_port, protocol):
    subscriber = redis.Redis(port=sub_port, protocol=protocol, decode_responses=True)
    publisher = redis.Redis(port=pub_port, protocol=protocol, decode_responses=True)
    pubsub = subscriber.pubsub()
    pubsub.subscribe("orders")
    pubsub.psubscribe("audit.*")
    wait_for_receivers(publisher, "orders", 1)
    for i in range(COUNT):
        assert publisher.publish("orders", "order-%d" % i) == 1
    publisher.publish("audit.login", "alice")
    for i in range(COUNT):
        message = skip_probes(pubsub)
        assert message["type"] == "message", message
        assert message["channel"] == "orders", message
        assert message["data"] == "order-%d" % i, (i, message)
    message = skip_probes(pubsub)
    assert message["type"] == "pmessage", message
    assert message["pattern"] == "audit.*" and message["channel"] == "audit.login", message
    assert message["data"] == "alice", message
    assert subscriber.pubsub_numsub("orders") == [("orders", 1)]
    assert subscriber.pubsub_numpat() == 1
    pubsub.unsubscribe("orders")
    pubsub.punsubscribe("audit.*")
    deadline = time.monotonic() + 10
    while subscriber.pubsub_numsub("orders") != [("orders", 0)]:
        pubsub.get_message(timeout=0.1)
        assert time.monotonic() < deadline, "never unsubscribed"
    assert publisher.publish("orders", "nobody") == 0
    pubsub.close()


def handlers_in_a_thread(sub_port, pub_port, protocol):
    subscriber = redis.Redis(port=sub_port, protocol=protocol, decode_responses=True)
    publisher = redis.Redis(port=pub_port, protocol=protocol, decode_responses=True)
    received = []
    done = threading.Event()

    def on_job(message):
        if message["data"] != "probe":
            received.append(message["data"])
            if len(received) == COUNT:
                done.set()

    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(jobs=on_job)
    worker = pubsub.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        wait_for_receivers(publisher, "jobs", 1)
        for i in range(COUNT):
            publisher.publish("jobs", "job-%d" % i)
        assert done.wait(20), "handlers saw %d of %d" % (len(received), COUNT)
        assert received == ["job-%d" % i for i in range(COUNT)]
    finally:
        worker.stop()
        worker.join(5)
        pubsub.close()


async def asyncio_listen(sub_port, pub_port, protocol):
    subscriber = redis.asyncio.Redis(port=sub_port, protocol=protocol, decode_responses=True)
    publisher = redis.asyncio.Redis(port=pub_port, protocol=protocol, decode_responses=True)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe("ticks")
    deadline = time.monotonic() + 10
    while await publisher.publish("ticks", "probe") != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for i in range(COUNT):
        await publisher.publish("ticks", "tick-%d" % i)
    seen = []

    async def collect():
        async for message in pubsub.listen():
            if message["type"] == "message" and message["data"] != "probe":
                seen.append(message["data"])
                if len(seen) == COUNT:
                    return

    await asyncio.wait_for(collect(), 20)
    assert seen == ["tick-%d" % i for i in range(COUNT)]
    await pubsub.aclose()
    await subscriber.aclose()
    await publisher.aclose()


def main():
    sub_port, pub_port = int(sys.argv[1]), int(sys.argv[2])
    for protocol in (2, 3):
        get_message_in_order(sub_port, pub_port, protocol)
        handlers_in_a_thread(sub_port, pub_port, protocol)
        asyncio.run(asyncio_listen(sub_port, pub_port, protocol))
    print("OK")


if __name__ == "__main__":
    main()
