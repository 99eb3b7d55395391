// The counter-ts component, transpiled to JS by jco (scripts/build-ts-guests.sh
// does that too), driven as the host drives it: this checks the SDK's key
// scheme, retirement and snapshots in the real component, without the host.
// Run: node --test guest-sdk-ts/test/ (after scripts/build-ts-guests.sh).
import { test } from "node:test";
import assert from "node:assert/strict";

const guest = await import(
  new URL("../../target/ts/transpiled/counter_ts/counter_ts.js", import.meta.url)
);

const created = {
  guest: { name: "counter-ts", digest: "sha256:00" },
  configJson: "{}",
  seed: 7n,
  tools: [],
};
let seq = 0n;
const event = (body) => ({ seq: ++seq, at: 1000n * seq, body });
const input = (text) =>
  event({ tag: "input", val: { from: { tag: "principal", val: "t" }, content: [{ tag: "text", val: text }] } });
const output = (key, text) =>
  event({ tag: "output", val: { key, content: [{ tag: "text", val: text }] } });

test("inc, inc, get: keys from the seq, outputs retired by the log", () => {
  seq = 0n;
  guest.init(created);
  assert.deepEqual(guest.wantedKeys(), []);
  guest.apply([input("inc")]);
  assert.deepEqual(guest.wantedKeys(), ["output-1"]);
  assert.deepEqual(guest.effect("output-1", undefined), {
    tag: "output",
    val: [{ tag: "text", val: "count = 1" }],
  });
  guest.apply([output("output-1", "count = 1"), input("inc"), input("get")]);
  assert.deepEqual(guest.wantedKeys(), ["output-3", "output-4"]);
  assert.equal(guest.effect("output-4", undefined).val[0].val, "count = 2");
  assert.equal(guest.effect("output-1", undefined), undefined, "retired");
});

test("remind: a sleep keyed by seq, until the event's at plus ms", () => {
  seq = 10n;
  guest.init(created);
  guest.apply([input("remind 250")]);
  assert.deepEqual(guest.wantedKeys(), ["sleep-11"]);
  assert.deepEqual(guest.effect("sleep-11", undefined), { tag: "sleep", val: 11_250n });
  // A retryable failure keeps it wanted; a final one retires it.
  guest.apply([event({ tag: "failed", val: { key: "sleep-11", kind: "other", message: "x", retryable: true, attempt: 1 } })]);
  assert.deepEqual(guest.wantedKeys(), ["sleep-11"]);
  guest.apply([event({ tag: "completed", val: { key: "sleep-11", outcome: { tag: "timer-fired" } } })]);
  assert.deepEqual(guest.wantedKeys(), ["output-13"]);
  assert.equal(guest.effect("output-13", undefined).val[0].val, "reminder: count = 0");
  guest.apply([input("remind -1"), input("remind 18446744073709551615")]);
  assert.equal(guest.effect("output-14", undefined).val[0].val, "not a number of milliseconds: -1");
  assert.deepEqual(guest.effect("sleep-15", undefined), { tag: "sleep", val: (1n << 64n) - 1n }, "saturates");
});

test("a snapshot restores the count and the wanted effects", () => {
  seq = 0n;
  guest.init(created);
  guest.apply([input("inc"), input("inc"), input("inc")]);
  const bytes = guest.snapshot();
  assert.ok(bytes instanceof Uint8Array);
  guest.init(created);
  assert.deepEqual(guest.wantedKeys(), []);
  assert.equal(guest.restore(bytes), true);
  assert.deepEqual(guest.wantedKeys(), ["output-1", "output-2", "output-3"]);
  guest.apply([input("get")]);
  assert.equal(guest.effect("output-4", undefined).val[0].val, "count = 3");
  assert.equal(guest.restore(new Uint8Array([0xff, 0x00])), false, "junk is refused");
});

test("a compacted log starts from its summary; done finishes", () => {
  seq = 0n;
  guest.init({ ...created, summary: "count = 41" });
  guest.apply([input("inc"), input("done"), input("what")]);
  assert.equal(guest.effect("output-1", undefined).val[0].val, "count = 42");
  assert.deepEqual(guest.effect("finish-2", undefined), { tag: "finish", val: "count = 42" });
  assert.equal(guest.effect("output-3", undefined).val[0].val, "unknown command: what");
});
