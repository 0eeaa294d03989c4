"""What the lock scripts share: workers competing for one lock across a leader kill.

`run(ports, take, workers, before, after)`: WORKERS threads, each with its own connection to
one of the ports (`take(me, port, shared)` is a worker's loop: it takes the lock and calls
`shared.critical_section(me, client)` inside it), until BEFORE critical sections have run;
then it prints READY, waits for a line on stdin (the test kills the leader meanwhile) and runs
AFTER more. Inside, a section draws a fencing token (INCR) and checks that no one else is
inside and that tokens grow. Returns the shared state once every check held.
"""
import sys
import threading
import time

import redis


class Shared:
    """What the workers share: who is inside, the tokens seen, counts."""

    def __init__(self, fence_key):
        self.fence_key = fence_key
        self.guard = threading.Lock()
        self.inside = None
        self.last_token = 0
        self.sections = 0
        self.errors = 0
        self.violations = []
        self.stop = threading.Event()

    def error(self, me, what, err):
        print(f"worker {me}: {what}: {type(err).__name__}: {err}", file=sys.stderr)
        with self.guard:
            self.errors += 1

    def critical_section(self, me, client):
        """Draws a token and checks that this worker is alone inside."""
        try:
            token = client.incr(self.fence_key)
            with self.guard:
                if self.inside is not None:
                    self.violations.append(f"{me} entered while {self.inside} was inside")
                if token <= self.last_token:
                    self.violations.append(f"token {token} after {self.last_token}")
                self.inside = me
                self.last_token = token
            time.sleep(0.002)
            with self.guard:
                if self.inside != me:
                    self.violations.append(f"{self.inside} got in while {me} was inside")
                self.inside = None
                self.sections += 1
        except redis.RedisError as err:
            self.error(me, "inside", err)
            with self.guard:
                self.inside = None


def wait_for_sections(shared, count, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        with shared.guard:
            if shared.sections >= count:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {shared.sections} of {count} critical sections")
        time.sleep(0.01)


def run(ports, take, fence_key, workers, before, after):
    shared = Shared(fence_key)
    threads = [
        threading.Thread(target=take, args=(i, ports[i % len(ports)], shared))
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for_sections(shared, before, 60)
        print("READY", flush=True)
        sys.stdin.readline()
        with shared.guard:
            target = shared.sections + after
        wait_for_sections(shared, target, 90)
    finally:
        shared.stop.set()
        for thread in threads:
            thread.join()
    assert not shared.violations, shared.violations
    return shared
