// A counter: `inc` adds one, `get` tells the count, `remind MS` tells it again
// MS milliseconds later, `compact` continues the session in a new log that
// starts from the count, `done` finishes the session. The same agent as
// examples/counter (Rust), effect for effect and key for key: a log started on
// one can be upgraded to the other.

import {
  type Agent,
  type Created,
  type Effects,
  type Event,
  exportAgent,
  inputText,
  outcome,
} from "../../../guest-sdk-ts/src/index.js";

/** What Rust's `u64::from_str` takes: ASCII digits, an optional `+`. */
function parseU64(text: string): bigint | undefined {
  if (!/^\+?[0-9]+$/.test(text)) return undefined;
  const n = BigInt(text);
  return n < 1n << 64n ? n : undefined;
}

class Counter implements Agent {
  count = 0n;

  init(created: Created, _fx: Effects): void {
    // A compacted log starts from the summary the old one left.
    const summary = created.summary ?? "";
    if (summary.startsWith("count = ")) {
      this.count = parseU64(summary.slice("count = ".length)) ?? 0n;
    }
  }

  apply(event: Event, fx: Effects): void {
    const text = inputText(event);
    if (text !== undefined) {
      // Rust's split_whitespace: no empty words.
      const [first, second] = text.split(/\s+/).filter((w) => w !== "");
      if (first === "inc" && second === undefined) {
        this.count += 1n;
        fx.output(`count = ${this.count}`);
      } else if (first === "get" && second === undefined) {
        fx.output(`count = ${this.count}`);
      } else if (first === "remind" && second !== undefined) {
        const ms = parseU64(second);
        if (ms !== undefined) {
          fx.sleepFor(ms);
        } else {
          fx.output(`not a number of milliseconds: ${second}`);
        }
      } else if (first === "compact" && second === undefined) {
        fx.compact(`count = ${this.count}`);
      } else if (first === "done" && second === undefined) {
        fx.finish(`count = ${this.count}`);
      } else {
        fx.output(`unknown command: ${text}`);
      }
    } else if (outcome(event)?.tag === "timer-fired") {
      fx.output(`reminder: count = ${this.count}`);
    }
  }
}

export const { init, restore, apply, wantedKeys, effect, snapshot } = exportAgent(
  () => new Counter(),
);
