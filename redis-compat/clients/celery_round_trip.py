#!/usr/bin/env python3
"""Celery (PyPI) with its Redis broker and result backend, unchanged, across two nodes.

Usage: celery_round_trip.py PRODUCER_PORT WORKER_PORT

The producer's app sends tasks and waits for their results through one node; the worker's app
(a Celery worker running in this process, `celery.contrib.testing.worker`) consumes them
(kombu: BRPOP on the queue, the unacked sorted set and hash) and stores results (SET and
PUBLISH in MULTI) through another node, so each result reaches the producer over Pub/Sub
fanned out between the nodes. Checks single tasks, a group, a chain and a task that fails.
Prints OK on success. Only 127.0.0.1.
"""
import sys

from celery import Celery, chain, group
from celery.contrib.testing.worker import start_worker


def make_app(port):
    url = "redis://127.0.0.1:%d/0" % port
    app = Celery("redraft_celery_check", broker=url, backend=url)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=True,
        result_expires=3600,
    )

    @app.task(name="check.add")
    def add(x, y):
        return x + y

    @app.task(name="check.fail")
    def fail(text):
        raise ValueError(text)

    return app


def main():
    producer_port, worker_port = int(sys.argv[1]), int(sys.argv[2])
    producer = make_app(producer_port)
    worker_app = make_app(worker_port)
    add = producer.tasks["check.add"]
    fail = producer.tasks["check.fail"]
    with start_worker(worker_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        results = [add.delay(i, i) for i in range(20)]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(20)]
        assert group(add.s(i, 1) for i in range(10))().get(timeout=60) == list(range(1, 11))
        assert chain(add.s(1, 2), add.s(3), add.s(4))().get(timeout=60) == 10
        failed = fail.delay("boom")
        try:
            failed.get(timeout=60)
        except ValueError as err:
            assert str(err) == "boom", err
        else:
            raise AssertionError("the failing task succeeded")
        assert failed.state == "FAILURE"
    print("OK")


if __name__ == "__main__":
    main()
