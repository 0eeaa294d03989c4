#!/usr/bin/env python3
"""Failover time of a local redraft cluster: leader `kill -9` → first successful write through
a survivor, median over several rounds.

Usage: failover.py [--binary target/release/redraft] [--rounds 5] [--nodes 3]
Starts its own cluster on free 127.0.0.1 ports in a temporary directory, kills and restarts
only the processes it started, and removes the directory at the end.
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time

import redis


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def info(port, field):
    try:
        fields = redis.Redis(port=port, socket_timeout=0.5).info("raft")
    except redis.RedisError:
        return None
    value = fields.get(field)
    return None if value is None else str(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/redraft")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    ports = free_ports(2 * args.nodes)
    client_ports, peer_ports = ports[: args.nodes], ports[args.nodes :]
    initial = ",".join(
        f"{i + 1}=127.0.0.1:{client_ports[i]}@{peer_ports[i]}" for i in range(args.nodes)
    )
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}

        def start(i):
            procs[i] = subprocess.Popen(
                [args.binary, "--node-id", str(i + 1), "--port", str(client_ports[i]),
                 "--cluster-port", str(peer_ports[i]), "--dir", os.path.join(tmp, f"n{i}"),
                 "--cluster-secret", "bench", "--initial-cluster", initial, "--log", "warn"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        for i in range(args.nodes):
            start(i)
        try:
            times = []
            for _ in range(args.rounds):
                deadline = time.monotonic() + 30
                while True:
                    leader = info(client_ports[0], "raft_leader_id")
                    if leader and leader != "none" and all(
                        info(p, "raft_leader_id") == leader for p in client_ports
                    ):
                        break
                    assert time.monotonic() < deadline, "no leader"
                    time.sleep(0.05)
                leader = int(leader) - 1
                survivor = (leader + 1) % args.nodes
                con = redis.Redis(port=client_ports[survivor], socket_timeout=2)
                con.incr("failover")
                procs[leader].send_signal(signal.SIGKILL)
                procs[leader].wait()
                killed = time.monotonic()
                while True:
                    try:
                        con.incr("failover")
                        break
                    except redis.RedisError:
                        time.sleep(0.005)
                        assert time.monotonic() - killed < 30, "no write after failover"
                times.append(time.monotonic() - killed)
                start(leader)
            print("failover_ms " + " ".join(f"{t * 1000:.0f}" for t in times))
            print(f"failover_median_ms {statistics.median(times) * 1000:.0f}")
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    main()
