// The SDK's runtime alone (tsc's output, run by node): key suffixes and the
// retirement rules of the Rust SDK's `Runtime::retire`.
import { test } from "node:test";
import assert from "node:assert/strict";

const { Runtime, toJson, fromJson } = await import(
  new URL("../../target/ts/js/guest-sdk-ts/src/index.js", import.meta.url)
);

const created = { guest: { name: "t", digest: "sha256:00" }, configJson: "{}", seed: 1n, tools: [] };
const ev = (seq, body) => ({ seq, at: 0n, body });
const input = (seq, text) =>
  ev(seq, { tag: "input", val: { from: { tag: "principal", val: "t" }, content: [{ tag: "text", val: text }] } });

class Many {
  apply(event, fx) {
    if (event.body.tag !== "input") return;
    fx.output("a");
    fx.output("b");
    fx.ask("ok?");
    fx.tool({ id: "call_1", name: "t", argumentsJson: "{}" });
    fx.wantBuilt("model");
  }
  build(key) {
    return { tag: "finish", val: `built ${key}` };
  }
}

test("one event's effects: kind-SEQ, then kind-SEQ.N", () => {
  const rt = new Runtime(() => new Many());
  rt.init(created);
  rt.apply([input(1234567890123n, "go")]);
  assert.deepEqual(rt.wantedKeys(), [
    "ask-1234567890123.2",
    "call_1",
    "model-1234567890123.3",
    "output-1234567890123",
    "output-1234567890123.1",
  ]);
  assert.deepEqual(rt.effect("model-1234567890123.3", undefined), {
    tag: "finish",
    val: "built model-1234567890123.3",
  });
});

test("retirement follows the Rust SDK", () => {
  const rt = new Runtime(() => new Many());
  rt.init(created);
  rt.apply([input(1n, "go")]);
  // A decision about a tool call does not end it; its completion does.
  rt.apply([ev(2n, { tag: "approval-decided", val: { key: "call_1", allow: true, by: "t" } })]);
  assert.ok(rt.wantedKeys().includes("call_1"));
  // A decision ends a question.
  rt.apply([ev(3n, { tag: "approval-decided", val: { key: "ask-1.2", allow: false, by: "t" } })]);
  assert.ok(!rt.wantedKeys().includes("ask-1.2"));
  rt.apply([
    ev(4n, { tag: "completed", val: { key: "call_1", outcome: { tag: "tool", val: { content: "", isError: false } } } }),
    ev(5n, { tag: "cancelled", val: "model-1.3" }),
    ev(6n, { tag: "output", val: { key: "output-1", content: [] } }),
    ev(7n, { tag: "failed", val: { key: "output-1.1", kind: "other", message: "", retryable: false, attempt: 1 } }),
  ]);
  assert.deepEqual(rt.wantedKeys(), []);
});

test("JSON keeps bigints", () => {
  const value = { n: (1n << 64n) - 1n, list: [1n, "x"], plain: 3 };
  assert.deepEqual(fromJson(toJson(value)), value);
});
