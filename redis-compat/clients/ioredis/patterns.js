#!/usr/bin/env node
// Common application patterns through ioredis (npm), RESP2 (ioredis 5 does not speak RESP3).
//
// Usage: node patterns.js PORT
// Counters, SET NX EX locks, MULTI/EXEC, a WATCH retry loop with contending connections,
// pipelines, hashes, expiries, errors and binary values, every reply asserted. Prints OK on
// success; any failure exits non-zero with the error. Only 127.0.0.1. Installed by
// `bash .ci/test` (npm ci in this folder); run by tests/clients.rs.
"use strict";

const assert = require("assert/strict");
const Redis = require("ioredis");

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node patterns.js PORT");
  process.exit(2);
}

const clients = [];

// A client that fails fast: no reconnect loop, no offline queue hiding a dead server.
function connect(extra = {}) {
  const client = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...extra,
  });
  client.on("error", () => {}); // failures surface as rejected commands
  clients.push(client);
  return client;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function counters(r, p) {
  await r.del(`${p}counter`, `${p}float`);
  assert.equal(await r.incr(`${p}counter`), 1);
  assert.equal(await r.incrby(`${p}counter`, 41), 42);
  assert.equal(await r.decrby(`${p}counter`, 2), 40);
  assert.equal(await r.decr(`${p}counter`), 39);
  assert.equal(await r.get(`${p}counter`), "39");
  assert.equal(await r.set(`${p}float`, "10.5"), "OK");
  assert.equal(await r.incrbyfloat(`${p}float`, 0.1), "10.6");
  assert.equal(await r.set(`${p}float`, "10.5"), "OK");
  assert.equal(await r.incrbyfloat(`${p}float`, -0.25), "10.25");
  assert.equal(await r.incrbyfloat(`${p}float`, "5.0e3"), "5010.25");
  assert.equal(await r.get(`${p}float`), "5010.25");
}

async function locks(r, p) {
  const lock = `${p}lock`;
  await r.del(lock);
  assert.equal(await r.set(lock, "owner-1", "EX", 30, "NX"), "OK");
  assert.equal(await r.set(lock, "owner-2", "EX", 30, "NX"), null);
  assert.equal(await r.get(lock), "owner-1");
  const ttl = await r.ttl(lock);
  assert.ok(ttl > 0 && ttl <= 30, `lock ttl ${ttl}`);
  // Release: only the owner deletes (check-and-delete inside WATCH/MULTI, no scripting).
  await r.watch(lock);
  assert.equal(await r.get(lock), "owner-1");
  assert.deepEqual(await r.multi().del(lock).exec(), [[null, 1]]);
  assert.equal(await r.exists(lock), 0);
  assert.equal(await r.set(lock, "owner-2", "EX", 30, "NX"), "OK");
  assert.equal(await r.get(lock), "owner-2");
  assert.equal(await r.del(lock), 1);
}

async function transactions(r, p) {
  await r.del(`${p}balance`, `${p}spent`, `${p}text`);
  assert.equal(await r.set(`${p}balance`, 100), "OK");
  assert.deepEqual(
    await r.multi().decrby(`${p}balance`, 30).incrby(`${p}spent`, 30).get(`${p}balance`).exec(),
    [
      [null, 70],
      [null, 30],
      [null, "70"],
    ],
  );
  // An error at run time fails its own slot only; the rest of the transaction applies.
  const results = await r.multi().set(`${p}text`, "abc").incr(`${p}text`).append(`${p}text`, "d").exec();
  assert.equal(results.length, 3);
  assert.deepEqual(results[0], [null, "OK"]);
  assert.ok(results[1][0] instanceof Error, "INCR on text fails inside EXEC");
  assert.match(results[1][0].message, /^ERR value is not an integer or out of range/);
  assert.equal(results[1][1], undefined);
  assert.deepEqual(results[2], [null, 4]);
  assert.equal(await r.get(`${p}text`), "abcd");
  // WATCH aborts EXEC when another connection writes the key first.
  const other = connect();
  await other.connect();
  assert.equal(await r.watch(`${p}balance`), "OK");
  assert.equal(await r.get(`${p}balance`), "70");
  assert.equal(await other.set(`${p}balance`, 0), "OK");
  assert.equal(await r.multi().set(`${p}balance`, 60).exec(), null);
  assert.equal(await r.get(`${p}balance`), "0");
  // UNWATCH forgets it.
  assert.equal(await r.watch(`${p}balance`), "OK");
  assert.equal(await other.set(`${p}balance`, 1), "OK");
  assert.equal(await r.unwatch(), "OK");
  assert.deepEqual(await r.multi().incr(`${p}balance`).exec(), [[null, 2]]);
}

// WATCH retry loop: several connections add 1 to the same key; every increment must land.
async function watchContention(p) {
  const key = `${p}contended`;
  const workers = 4;
  const perWorker = 10;
  const conns = [];
  for (let i = 0; i < workers; i++) {
    const c = connect({ connectionName: `ioredis-watch-${i}` });
    await c.connect();
    conns.push(c);
  }
  await conns[0].set(key, 0);
  let aborted = 0;
  async function worker(c) {
    for (let done = 0; done < perWorker; ) {
      assert.equal(await c.watch(key), "OK");
      const value = Number(await c.get(key));
      await sleep(0); // let the other connections interleave
      const result = await c.multi().set(key, value + 1).exec();
      if (result === null) {
        aborted++;
        continue;
      }
      assert.deepEqual(result, [[null, "OK"]]);
      done++;
    }
  }
  await Promise.all(conns.map(worker));
  assert.equal(await conns[0].get(key), String(workers * perWorker));
  // The workers start together and yield between GET and EXEC, so some EXECs must abort.
  assert.ok(aborted > 0, "no EXEC was aborted under contention");
}

async function pipelines(r, p) {
  const key = `${p}piped`;
  await r.del(key);
  const pipe = r.pipeline();
  for (let i = 0; i < 1000; i++) pipe.incr(key);
  const results = await pipe.exec();
  assert.equal(results.length, 1000);
  results.forEach(([err, value], i) => {
    assert.equal(err, null);
    assert.equal(value, i + 1);
  });
  // A mixed pipeline with an error in the middle keeps its order.
  const mixed = await r.pipeline().set(`${p}p:a`, "1").hget(`${p}p:a`, "f").get(`${p}p:a`).exec();
  assert.deepEqual(mixed[0], [null, "OK"]);
  assert.match(mixed[1][0].message, /^WRONGTYPE /);
  assert.deepEqual(mixed[2], [null, "1"]);
}

async function hashes(r, p) {
  const key = `${p}user:1`;
  await r.del(key);
  assert.equal(await r.hset(key, "name", "ada", "visits", 1), 2);
  assert.equal(await r.hset(key, { lang: "en", name: "Ada" }), 1);
  assert.equal(await r.hincrby(key, "visits", 9), 10);
  assert.equal(await r.hincrbyfloat(key, "score", 1.5), "1.5");
  assert.deepEqual(await r.hgetall(key), { lang: "en", name: "Ada", score: "1.5", visits: "10" });
  assert.deepEqual(await r.hmget(key, "name", "missing", "visits"), ["Ada", null, "10"]);
  assert.equal(await r.hget(key, "lang"), "en");
  assert.equal(await r.hlen(key), 4);
  assert.equal(await r.hexists(key, "score"), 1);
  assert.equal(await r.hdel(key, "score", "missing"), 1);
  assert.deepEqual((await r.hkeys(key)).sort(), ["lang", "name", "visits"]);
  assert.deepEqual(await r.hgetall(`${p}no-such-hash`), {});
}

async function expiries(r, p) {
  const key = `${p}session`;
  await r.del(key, `${p}missing`);
  assert.equal(await r.set(key, "data"), "OK");
  assert.equal(await r.ttl(key), -1);
  assert.equal(await r.expire(key, 100), 1);
  const ttl = await r.ttl(key);
  assert.ok(ttl > 95 && ttl <= 100, `ttl ${ttl}`);
  const pttl = await r.pttl(key);
  assert.ok(pttl > 95000 && pttl <= 100000, `pttl ${pttl}`);
  assert.equal(await r.persist(key), 1);
  assert.equal(await r.ttl(key), -1);
  assert.equal(await r.ttl(`${p}missing`), -2);
  assert.equal(await r.expire(`${p}missing`, 10), 0);
  // A short expiry really expires.
  assert.equal(await r.set(key, "short", "PX", 100), "OK");
  assert.equal(await r.get(key), "short");
  await sleep(300);
  assert.equal(await r.get(key), null);
  assert.equal(await r.exists(key), 0);
  assert.equal(await r.ttl(key), -2);
}

async function errors(r, p) {
  const key = `${p}string`;
  assert.equal(await r.set(key, "text"), "OK");
  await assert.rejects(r.hget(key, "field"), (err) => {
    assert.ok(err instanceof Redis.ReplyError, `ReplyError, got ${err && err.constructor.name}`);
    assert.ok(err.message.startsWith("WRONGTYPE"), err.message);
    assert.equal(err.message, "WRONGTYPE Operation against a key holding the wrong kind of value");
    return true;
  });
  await assert.rejects(r.incr(key), /^ReplyError: ERR value is not an integer or out of range/);
  // The connection stays usable after errors.
  assert.equal(await r.ping(), "PONG");
  assert.equal(await r.get(key), "text");
}

async function binary(r, p) {
  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  const value = Buffer.concat([all, Buffer.from("\r\n$-1\r\n*0\r\n"), Buffer.from([0xff, 0xfe, 0x00])]);
  const key = Buffer.concat([Buffer.from(`${p}bin:`), Buffer.from([0x00, 0xff, 0x0d, 0x0a])]);
  assert.equal(await r.set(key, value), "OK");
  const back = await r.getBuffer(key);
  assert.ok(Buffer.isBuffer(back));
  assert.ok(back.equals(value), "binary value round-trips");
  assert.equal(await r.strlen(key), value.length);
  assert.equal(await r.getBuffer(Buffer.from(`${p}bin:missing`)), null);
  const big = Buffer.alloc(1 << 20, 0xab);
  big.write("\r\n", 1000);
  assert.equal(await r.set(`${p}bin:big`, big), "OK");
  assert.ok((await r.getBuffer(`${p}bin:big`)).equals(big), "1 MiB value round-trips");
  assert.equal(await r.hset(`${p}bin:hash`, "f", value), 1);
  assert.ok((await r.hgetBuffer(`${p}bin:hash`, "f")).equals(value));
}

// Many commands in flight on one connection (ioredis auto-pipelining).
async function autoPipelining(p) {
  const r = connect({ enableAutoPipelining: true });
  await r.connect();
  const key = `${p}auto`;
  await r.del(key);
  const values = await Promise.all(Array.from({ length: 500 }, () => r.incr(key)));
  assert.deepEqual(values, Array.from({ length: 500 }, (_, i) => i + 1));
}

// The client as most applications create it: all defaults, connecting at construction.
async function defaults() {
  const r = new Redis({ port, host: "127.0.0.1", lazyConnect: false });
  clients.push(r);
  const errorsSeen = [];
  r.on("error", (err) => errorsSeen.push(err));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("default client never became ready")), 10000);
    r.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  assert.equal(r.status, "ready");
  const p = "ioredis:default:";
  await counters(r, p);
  await locks(r, p);
  assert.deepEqual(await r.multi().incr(`${p}counter`).get(`${p}counter`).exec(), [
    [null, 40],
    [null, "40"],
  ]);
  assert.equal(await r.set(`${p}x`, "y"), "OK");
  assert.equal(await r.get(`${p}x`), "y");
  assert.deepEqual(errorsSeen, []);
}

async function main() {
  const r = connect({ connectionName: "ioredis-patterns" });
  await r.connect();
  assert.equal(await r.client("GETNAME"), "ioredis-patterns");
  assert.equal(await r.ping(), "PONG");
  const p = "ioredis:";
  await counters(r, p);
  await locks(r, p);
  await transactions(r, p);
  await watchContention(p);
  await pipelines(r, p);
  await hashes(r, p);
  await expiries(r, p);
  await errors(r, p);
  await binary(r, p);
  await autoPipelining(p);
  await defaults();
  await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
  console.log("OK");
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  for (const c of clients) c.disconnect();
  process.exit(1);
});
