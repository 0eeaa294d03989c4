#!/usr/bin/env node
// node-redlock and rate-limiter-flexible, unchanged, over ioredis, against a redraft cluster,
// across a leader kill. Both run their Lua scripts by EVALSHA (EVAL on NOSCRIPT).
//
// Usage: node locks.js PORT [PORT...]   (ports of nodes that stay up: followers)
// 1. Redlock's API: acquire, a refused second acquire, extend, release, `using`.
// 2. WORKERS async workers, each with its own connection to one of the ports, repeatedly take
//    one Redlock lock, draw a fencing token (INCR) inside it and check no one else is inside
//    and that tokens only grow; meanwhile a rate limiter consumes points, and each consume's
//    count must be exactly one more than the last. After SECTIONS_BEFORE critical sections it
//    prints READY and waits for a line on stdin (the test kills the leader meanwhile), then
//    runs SECTIONS_AFTER more. Finally the limiter's stored count must equal the consumes
//    acknowledged, and a limiter with few points must refuse once they are spent.
// Prints "OK <sections> <consumes> <errors>" and exits 0 when every check held. Only
// 127.0.0.1. Installed by `bash .ci/test` (npm ci in this folder); run by tests/scripting.rs.
"use strict";

const assert = require("assert/strict");
const readline = require("readline");
const Redis = require("ioredis");
const { default: Redlock, ExecutionError } = require("redlock");
const { RateLimiterRedis, RateLimiterRes } = require("rate-limiter-flexible");

const WORKERS = 4;
const SECTIONS_BEFORE = 40;
const SECTIONS_AFTER = 80;
const LEASE_MS = 10000;

const ports = process.argv.slice(2).map(Number);
if (ports.length === 0 || !ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) {
  console.error("usage: node locks.js PORT [PORT...]");
  process.exit(2);
}

const clients = [];

function connect(port) {
  const client = new Redis({ port, host: "127.0.0.1", commandTimeout: 15000 });
  client.on("error", () => {}); // failures surface as rejected commands
  clients.push(client);
  return client;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function redlockFor(client) {
  // One CP store: one "instance". Contention among the workers needs many retries.
  return new Redlock([client], { retryCount: 3000, retryDelay: 20, retryJitter: 20 });
}

async function checkApi(r) {
  const redlock = new Redlock([r], { retryCount: 0 });
  const lock = await redlock.acquire(["js:lock:api"], LEASE_MS);
  assert.equal(await r.get("js:lock:api"), lock.value);
  await assert.rejects(redlock.acquire(["js:lock:api"], LEASE_MS), ExecutionError);
  const extended = await lock.extend(LEASE_MS * 2);
  assert.ok((await r.pttl("js:lock:api")) > LEASE_MS, "extend set a longer lease");
  await extended.release();
  assert.equal(await r.exists("js:lock:api"), 0);
  const answer = await redlock.using(["js:lock:api"], LEASE_MS, async (signal) => {
    assert.equal(signal.aborted, false);
    return 42;
  });
  assert.equal(answer, 42);
  assert.equal(await r.exists("js:lock:api"), 0, "using releases");
}

async function checkLimiter(r) {
  const limiter = new RateLimiterRedis({
    storeClient: r,
    keyPrefix: "js:rl:api",
    points: 3,
    duration: 60,
  });
  for (let i = 1; i <= 3; i++) {
    const res = await limiter.consume("user");
    assert.equal(res.consumedPoints, i);
    assert.equal(res.remainingPoints, 3 - i);
  }
  await assert.rejects(limiter.consume("user"), (res) => {
    assert.ok(res instanceof RateLimiterRes, `refused with RateLimiterRes, got ${res}`);
    assert.ok(res.msBeforeNext > 0 && res.msBeforeNext <= 60000, `${res.msBeforeNext}`);
    return true;
  });
}

async function main() {
  await checkApi(connect(ports[0]));
  await checkLimiter(connect(ports[0]));

  const shared = { inside: null, lastToken: 0, sections: 0, consumes: 0, errors: 0 };
  const violations = [];
  let stop = false;

  async function lockWorker(me, port) {
    const r = connect(port);
    const redlock = redlockFor(r);
    while (!stop) {
      let lock;
      try {
        lock = await redlock.acquire(["js:lock:shared"], LEASE_MS);
      } catch (err) {
        console.error(`worker ${me}: acquire: ${err}`);
        shared.errors += 1;
        await sleep(100);
        continue;
      }
      try {
        const token = await r.incr("js:lock:fence");
        if (shared.inside !== null) violations.push(`${me} entered while ${shared.inside} was inside`);
        if (token <= shared.lastToken) violations.push(`token ${token} after ${shared.lastToken}`);
        shared.inside = me;
        shared.lastToken = token;
        await sleep(2);
        if (shared.inside !== me) violations.push(`${shared.inside} got in while ${me} was inside`);
        shared.inside = null;
        shared.sections += 1;
      } catch (err) {
        console.error(`worker ${me}: inside: ${err}`);
        shared.errors += 1;
        shared.inside = null;
      }
      try {
        await lock.release();
      } catch (err) {
        console.error(`worker ${me}: release: ${err}`);
        shared.errors += 1;
      }
    }
  }

  async function limiterWorker(port) {
    const limiter = new RateLimiterRedis({
      storeClient: connect(port),
      keyPrefix: "js:rl:load",
      points: 1000000,
      duration: 3600,
    });
    let last = 0;
    while (!stop) {
      try {
        const res = await limiter.consume("load");
        if (res.consumedPoints !== last + 1) {
          violations.push(`consume counted ${res.consumedPoints} after ${last}`);
        }
        last = res.consumedPoints;
        shared.consumes += 1;
      } catch (err) {
        console.error(`limiter: ${err}`);
        shared.errors += 1;
        await sleep(100);
      }
    }
    return last;
  }

  async function waitForSections(count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (shared.sections < count) {
      assert.ok(Date.now() < deadline, `only ${shared.sections} of ${count} critical sections`);
      await sleep(10);
    }
  }

  const workers = [];
  for (let i = 0; i < WORKERS; i++) workers.push(lockWorker(i, ports[i % ports.length]));
  const limiter = limiterWorker(ports[ports.length - 1]);

  await waitForSections(SECTIONS_BEFORE, 60000);
  console.log("READY");
  await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once("line", resolve));
  await waitForSections(shared.sections + SECTIONS_AFTER, 90000);
  stop = true;
  await Promise.all(workers);
  const lastCount = await limiter;

  assert.deepEqual(violations, []);
  const r = connect(ports[0]);
  const fence = Number(await r.get("js:lock:fence"));
  assert.ok(fence >= shared.sections, `fence ${fence} < sections ${shared.sections}`);
  const stored = Number(await r.get("js:rl:load:load"));
  assert.equal(stored, lastCount, "the limiter stored exactly the acknowledged consumes");
  console.log(`OK ${shared.sections} ${shared.consumes} ${shared.errors}`);
}

main()
  .then(() => {
    for (const c of clients) c.disconnect();
    process.exit(0);
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
