#!/usr/bin/env node
// ioredis's subscriber mode, unchanged, with its subscriber on one node and its publisher on
// another (RESP2: ioredis 5 does not speak RESP3).
//
// Usage: node pubsub.js SUBSCRIBER_PORT PUBLISHER_PORT
// SUBSCRIBE and PSUBSCRIBE with "message" / "pmessage" / "messageBuffer" events: every message
// once and in publish order; PUBLISH's count; commands refused in subscriber mode; unsubscribing
// back to a normal connection. Prints OK on success; any failure exits non-zero with the
// error. Only 127.0.0.1. Run by tests/pubsub.rs.
"use strict";

const assert = require("assert/strict");
const Redis = require("ioredis");

const [subPort, pubPort] = process.argv.slice(2, 4).map(Number);
if (![subPort, pubPort].every((p) => Number.isInteger(p) && p > 0 && p < 65536)) {
  console.error("usage: node pubsub.js SUBSCRIBER_PORT PUBLISHER_PORT");
  process.exit(2);
}

const COUNT = 200;
const clients = [];

function connect(port) {
  const client = new Redis({
    port,
    host: "127.0.0.1",
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on("error", () => {});
  clients.push(client);
  return client;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Publishes probes until one reaches `expected` subscribers.
async function waitForReceivers(publisher, channel, expected) {
  const deadline = Date.now() + 10000;
  while ((await publisher.publish(channel, "probe")) !== expected) {
    assert.ok(Date.now() < deadline, `PUBLISH ${channel} never reached ${expected}`);
    await sleep(50);
  }
}

// Resolves once `predicate()` holds, polling, or rejects after `ms`.
async function until(predicate, ms, what) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function main() {
  const subscriber = connect(subPort);
  const publisher = connect(pubPort);
  const messages = [];
  const patterned = [];
  const buffers = [];
  subscriber.on("message", (channel, message) => {
    if (message !== "probe") messages.push([channel, message]);
  });
  subscriber.on("pmessage", (pattern, channel, message) => {
    if (message !== "probe") patterned.push([pattern, channel, message]);
  });
  subscriber.on("messageBuffer", (channel, message) => {
    if (message.toString() !== "probe") buffers.push(message);
  });

  assert.equal(await subscriber.subscribe("news", "sport"), 2);
  assert.equal(await subscriber.psubscribe("alerts.*"), 3);
  await waitForReceivers(publisher, "news", 1);

  for (let i = 0; i < COUNT; i++) {
    assert.equal(await publisher.publish(i % 2 ? "news" : "sport", `m-${i}`), 1);
  }
  assert.equal(await publisher.publish("alerts.disk", "full"), 1);
  const binary = Buffer.from([0, 255, 13, 10, 7]);
  assert.equal(await publisher.publish("news", binary), 1);

  await until(() => messages.length === COUNT + 1 && patterned.length === 1, 10000, "messages");
  for (let i = 0; i < COUNT; i++) {
    assert.deepEqual(messages[i], [i % 2 ? "news" : "sport", `m-${i}`]);
  }
  assert.deepEqual(patterned[0], ["alerts.*", "alerts.disk", "full"]);
  assert.ok(buffers[COUNT].equals(binary), "binary payload intact");

  // Subscriber mode refuses other commands (ioredis itself, before sending).
  await assert.rejects(subscriber.get("k"));

  // Back to a normal connection.
  await subscriber.unsubscribe("news", "sport");
  await subscriber.punsubscribe("alerts.*");
  assert.equal(await subscriber.set("k", "v"), "OK");
  assert.equal(await subscriber.get("k"), "v");
  assert.equal(await publisher.publish("news", "nobody"), 0);
  console.log("OK");
}

main()
  .then(() => {
    clients.forEach((c) => c.disconnect());
  })
  .catch((err) => {
    console.error(err);
    clients.forEach((c) => c.disconnect());
    process.exit(1);
  });
