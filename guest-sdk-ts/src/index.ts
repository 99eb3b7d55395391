/**
 * Write Logbook agents in TypeScript.
 *
 * An agent is a pure fold over its log: `apply` sees every event, in order,
 * and says through {@link Effects} what it wants done: call a model, run a
 * tool, ask a human, sleep, say something. The host performs each effect,
 * records the result in the log and hands it back as another event. The
 * guest never performs I/O, so replaying the log always rebuilds the same
 * agent.
 *
 * ```ts
 * import { type Agent, type Event, type Effects, exportAgent, inputText } from "logbook-guest";
 *
 * class Echo implements Agent {
 *   apply(event: Event, fx: Effects) {
 *     const text = inputText(event);
 *     if (text !== undefined) fx.output(`you said: ${text}`);
 *   }
 * }
 *
 * export const { init, restore, apply, wantedKeys, effect, snapshot } = exportAgent(() => new Echo());
 * ```
 *
 * The same rules as the Rust SDK (`guest-sdk/`, `docs/guest-contract.md`):
 * effects are kept until the log says they are done (an `output`, `sent`,
 * `finished`, `completed`, final `failed`, `cancelled`, or `approval-decided`
 * of an `ask`, with the same key), so an agent says what it wants once; keys
 * derive from the seq of the event being folded (`output-7`, `output-7.1`),
 * which makes them stable under replay, and identical to the Rust SDK's.
 * The agent's state and its wanted effects are its snapshot, as JSON.
 */

import type {
  ContentBlock,
  Created,
  EffectBody,
  Event,
  EventBody,
  ModelRequest,
  Outcome,
  ToolCall,
} from "./types.js";

export type * from "./types.js";

/** The largest u64: `sleepFor` saturates at it, as the Rust SDK does. */
const U64_MAX = (1n << 64n) - 1n;

/**
 * Agent logic: a pure fold over the log. The agent's state is the object
 * itself; {@link exportAgent} makes a fresh one with the factory it is given.
 */
export interface Agent {
  /**
   * Start a new log from its `created` event (seq 0). Also called, over the
   * state folded so far, with a fork's own `created` (its `parent` is set):
   * the branch's config and tools.
   */
  init?(created: Created, fx: Effects): void;
  /** Fold one event. Everything the agent wants done, it says through `fx`. */
  apply(event: Event, fx: Effects): void;
  /**
   * The body of an effect wanted with {@link Effects.wantBuilt}, built only
   * when the host asks for it (once, for a key its log has not recorded).
   * It must be what the agent meant when it wanted the key.
   */
  build?(key: string): EffectBody | undefined;
  /**
   * The body of `key` as `build` would give it, but as a model request that
   * extends model call `base` (`extends: base`, only the messages after
   * `base`'s); `undefined` when the agent can't say it so.
   */
  buildAfter?(key: string, base: string): EffectBody | undefined;
  /**
   * The agent's state as a JSON value; by default its own enumerable
   * fields. `bigint`s survive the trip (see {@link toJson}).
   */
  snapshot?(): unknown;
  /**
   * Take back what `snapshot` gave, on a fresh agent; by default the fields
   * are assigned back. Throw when it can't be used: the host then replays.
   */
  restore?(state: unknown): void;
}

/** What a wanted effect is kept as until the log retires its key. */
type Wanted = { body: EffectBody } | { built: true };

/**
 * What an agent wants done, said while it folds an event. Every method
 * returns the key of the effect: `kind-SEQ`, then `kind-SEQ.1`, ... for
 * more effects from one event, or the key given (a tool call's id).
 */
export class Effects {
  #wanted: Map<string, Wanted>;
  #seq: bigint;
  #at: bigint;
  #made = 0;

  /** @internal */
  constructor(wanted: Map<string, Wanted>, seq: bigint, at: bigint) {
    this.#wanted = wanted;
    this.#seq = seq;
    this.#at = at;
  }

  /** The seq of the event being folded. */
  get seq(): bigint {
    return this.#seq;
  }

  /** The host's clock when the event being folded was written (unix ms). */
  get nowMs(): bigint {
    return this.#at;
  }

  #nextKey(kind: string): string {
    const key =
      this.#made > 0 ? `${kind}-${this.#seq}.${this.#made}` : `${kind}-${this.#seq}`;
    this.#made += 1;
    return key;
  }

  /**
   * Want an effect under an explicit key. A key the log already records is
   * never performed again, so keys must be unique within the log.
   */
  want(key: string, body: EffectBody): string {
    this.#wanted.set(key, { body });
    return key;
  }

  /**
   * Want an effect whose body the agent's `build` makes when the host asks
   * for it; `kind` names the key (`model` gives `model-7`).
   */
  wantBuilt(kind: string): string {
    const key = this.#nextKey(kind);
    this.#wanted.set(key, { built: true });
    return key;
  }

  /** Stop wanting an effect; the host cancels it if it is in flight. */
  dropEffect(key: string): void {
    this.#wanted.delete(key);
  }

  /** Whether an effect is still wanted (not yet done). */
  isWanted(key: string): boolean {
    return this.#wanted.has(key);
  }

  /** Say text to the session's participants. */
  output(text: string): string {
    return this.outputBlocks([text_(text)]);
  }

  /** Say content to the session's participants. */
  outputBlocks(content: ContentBlock[]): string {
    return this.want(this.#nextKey("output"), { tag: "output", val: content });
  }

  /** Call a model. */
  model(request: ModelRequest): string {
    return this.want(this.#nextKey("model"), { tag: "model", val: request });
  }

  /** Run a tool; the key is the call's id. */
  tool(call: ToolCall): string {
    return this.want(call.id, { tag: "tool", val: call });
  }

  /** Ask a human; the answer arrives as `approval-decided` with this key. */
  ask(text: string): string {
    return this.want(this.#nextKey("ask"), { tag: "ask", val: { text } });
  }

  /** Sleep until a unix time in ms; `completed` with `timer-fired` follows. */
  sleepUntil(untilMs: bigint | number): string {
    return this.want(this.#nextKey("sleep"), { tag: "sleep", val: u64(untilMs) });
  }

  /** Sleep for `ms` after the event being folded was written. */
  sleepFor(ms: bigint | number): string {
    const until = this.#at + u64(ms);
    return this.sleepUntil(until > U64_MAX ? U64_MAX : until);
  }

  /** Send a message to another session (by id or name). */
  send(target: string, content: ContentBlock[]): string {
    return this.want(this.#nextKey("send"), { tag: "send", val: { target, content } });
  }

  /** Continue the session in a new log that starts from `summary`. */
  compact(summary: string): string {
    return this.want(this.#nextKey("compact"), { tag: "compact", val: summary });
  }

  /** End the session with a result. */
  finish(result: string): string {
    return this.want(this.#nextKey("finish"), { tag: "finish", val: result });
  }
}

/** A whole, non-negative integer as a u64, or a RangeError. */
function u64(n: bigint | number): bigint {
  const big = typeof n === "bigint" ? n : Number.isSafeInteger(n) ? BigInt(n) : NaN;
  if (typeof big !== "bigint" || big < 0n || big > U64_MAX) {
    throw new RangeError(`not a u64: ${n}`);
  }
  return big;
}

/** The guest's whole state: the agent and the effects it still wants. */
export class Runtime<A extends Agent> {
  #make: () => A;
  #agent: A;
  #wanted = new Map<string, Wanted>();

  constructor(make: () => A) {
    this.#make = make;
    this.#agent = make();
  }

  /** The agent (tests). */
  get agent(): A {
    return this.#agent;
  }

  init(created: Created): void {
    this.#agent = this.#make();
    this.#wanted = new Map();
    this.#agent.init?.(created, new Effects(this.#wanted, 0n, 0n));
  }

  restore(snapshot: Uint8Array): boolean {
    try {
      const state = fromJson(new TextDecoder("utf-8", { fatal: true }).decode(snapshot)) as {
        agent: unknown;
        wanted: [string, Wanted][];
      };
      const agent = this.#make();
      if (agent.restore) {
        agent.restore(state.agent);
      } else {
        Object.assign(agent, state.agent);
      }
      this.#agent = agent;
      this.#wanted = new Map(state.wanted);
      return true;
    } catch {
      return false;
    }
  }

  apply(events: Event[]): void {
    for (const event of events) {
      this.#retire(event.body);
      const fx = new Effects(this.#wanted, event.seq, event.at);
      // A fork's own `created` carries the branch's config and tools: it goes
      // to `init`, over the state folded so far.
      if (event.body.tag === "created") {
        this.#agent.init?.(event.body.val, fx);
        continue;
      }
      this.#agent.apply(event, fx);
    }
  }

  /** Forget effects that the log says are done (as the Rust SDK's `retire`). */
  #retire(body: EventBody): void {
    let done: string;
    switch (body.tag) {
      case "completed":
      case "output":
      case "sent":
      case "finished":
        done = body.val.key;
        break;
      case "failed":
        if (body.val.retryable) return;
        done = body.val.key;
        break;
      case "cancelled":
        done = body.val;
        break;
      case "approval-decided": {
        // A decision ends a question; for a tool the host asked about, the
        // tool's own `completed` ends it.
        const wanted = this.#wanted.get(body.val.key);
        if (!wanted || !("body" in wanted) || wanted.body.tag !== "ask") return;
        done = body.val.key;
        break;
      }
      default:
        return;
    }
    this.#wanted.delete(done);
  }

  /** The keys of the wanted effects, in the Rust SDK's order (by bytes). */
  wantedKeys(): string[] {
    return [...this.#wanted.keys()].sort(byBytes);
  }

  effect(key: string, base: string | undefined): EffectBody | undefined {
    const wanted = this.#wanted.get(key);
    if (wanted === undefined) return undefined;
    if ("body" in wanted) return wanted.body;
    const after = base === undefined ? undefined : this.#agent.buildAfter?.(key, base);
    return after ?? this.#agent.build?.(key);
  }

  snapshot(): Uint8Array | undefined {
    try {
      const agent = this.#agent.snapshot ? this.#agent.snapshot() : { ...this.#agent };
      return new TextEncoder().encode(toJson({ agent, wanted: [...this.#wanted] }));
    } catch {
      return undefined;
    }
  }
}

/** UTF-8 byte order, which is UTF-16 order for the ASCII of keys. */
function byBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The six exports of the world `agent`, over a fresh agent from `make`.
 * Export them from the guest's module under these names:
 *
 * ```ts
 * export const { init, restore, apply, wantedKeys, effect, snapshot } = exportAgent(() => new Counter());
 * ```
 */
export function exportAgent<A extends Agent>(make: () => A) {
  const runtime = new Runtime(make);
  return {
    init: (created: Created): void => runtime.init(created),
    restore: (snapshot: Uint8Array): boolean => runtime.restore(snapshot),
    apply: (events: Event[]): void => runtime.apply(events),
    wantedKeys: (): string[] => runtime.wantedKeys(),
    effect: (key: string, base?: string): EffectBody | undefined => runtime.effect(key, base),
    snapshot: (): Uint8Array | undefined => runtime.snapshot(),
  };
}

/**
 * JSON text of a value whose `bigint`s are kept as `{"$u64": "123"}`
 * (JSON has no integers past 2^53, and `JSON.stringify` refuses bigints).
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    typeof v === "bigint" ? { $u64: v.toString() } : v,
  );
}

/** The value of {@link toJson}'s text, its `bigint`s restored. */
export function fromJson(text: string): unknown {
  return JSON.parse(text, (_key, v) =>
    v !== null && typeof v === "object" && typeof v.$u64 === "string" && Object.keys(v).length === 1
      ? BigInt(v.$u64)
      : v,
  );
}

function text_(text: string): ContentBlock {
  return { tag: "text", val: text };
}

/** A text block. */
export const text = text_;

/** The text blocks of `content`, joined by newlines. */
export function textOf(content: ContentBlock[]): string {
  return content
    .filter((b): b is { tag: "text"; val: string } => b.tag === "text")
    .map((b) => b.val)
    .join("\n");
}

/** The tool calls among `content`. */
export function toolCalls(content: ContentBlock[]): ToolCall[] {
  return content
    .filter((b): b is { tag: "tool-call"; val: ToolCall } => b.tag === "tool-call")
    .map((b) => b.val);
}

/** The text of an `input` event (its text blocks joined by newlines). */
export function inputText(event: Event): string | undefined {
  return event.body.tag === "input" ? textOf(event.body.val.content) : undefined;
}

/** The key of the effect an event is about. */
export function keyOf(event: Event): string | undefined {
  const body = event.body;
  switch (body.tag) {
    case "requested":
    case "completed":
    case "failed":
    case "approval-requested":
    case "approval-decided":
    case "output":
    case "sent":
    case "finished":
      return body.val.key;
    case "cancelled":
      return body.val;
    default:
      return undefined;
  }
}

/** The outcome of a `completed` event. */
export function outcome(event: Event): Outcome | undefined {
  return event.body.tag === "completed" ? event.body.val.outcome : undefined;
}
