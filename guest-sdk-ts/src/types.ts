/**
 * The types of `wit/agent.wit` (package `logbook:agent@0.4.0`) as
 * componentize-js hands them to a guest and takes them back:
 *
 * - a record is an object with camelCase fields (`config-json` is `configJson`);
 * - a variant is `{ tag, val }` with the case's kebab-case name as `tag`;
 * - an enum is its case's kebab-case name, a string;
 * - `option<T>` is `T` or `undefined`;
 * - `u64` is a `bigint`, `u32` a `number`;
 * - `list<u8>` is a `Uint8Array`.
 *
 * Written by hand from the WIT; `scripts/build-ts-guests.sh` builds a guest
 * against the WIT itself, so a mismatch fails there, not at run time.
 */

/** A position in a log: the event `seq` of log `log` (a UUIDv7, as text). */
export interface LogPos {
  log: string;
  seq: bigint;
}

/** The guest component a log runs on. */
export interface GuestRef {
  name: string;
  /** `sha256:` followed by the hex digest of the component's bytes. */
  digest: string;
}

/** A tool the host offers this session. */
export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the tool's arguments, as JSON text. */
  parametersJson: string;
}

/** A model's request for a tool to run. */
export interface ToolCall {
  id: string;
  name: string;
  /** The arguments as JSON text (an object). */
  argumentsJson: string;
}

/** A blob stored beside the log, by digest. */
export interface BlobRef {
  digest: string;
  size: bigint;
}

/** The bytes of a tool part: inline (base64), or a stored blob. */
export type PartData =
  | { tag: "base64"; val: string }
  | { tag: "blob"; val: BlobRef };

/** An image or a sound. */
export interface Media {
  mimeType: string;
  data: PartData;
  /** The server's annotations, as JSON text. */
  annotations?: string;
}

/** A resource returned whole: text, or bytes. */
export interface EmbeddedResource {
  uri: string;
  mimeType?: string;
  text?: string;
  data?: PartData;
  annotations?: string;
}

/** A pointer to a resource. */
export interface ResourceLink {
  uri: string;
  name: string;
  mimeType?: string;
  description?: string;
  annotations?: string;
}

/** Typed content a tool returned beside its text. */
export type ToolPart =
  | { tag: "image"; val: Media }
  | { tag: "audio"; val: Media }
  | { tag: "resource"; val: EmbeddedResource }
  | { tag: "resource-link"; val: ResourceLink };

/** The result of a tool call, as the model will read it: its text and typed parts. */
export interface ToolResult {
  callId: string;
  content: string;
  isError: boolean;
  parts: ToolPart[];
}

/** A model's reasoning; `opaque` is only ever sent back to `provider`. */
export interface Reasoning {
  text?: string;
  signature?: string;
  opaque?: string;
  provider: string;
}

/** Provider-neutral content. */
export type ContentBlock =
  | { tag: "text"; val: string }
  | { tag: "tool-call"; val: ToolCall }
  | { tag: "tool-result"; val: ToolResult }
  | { tag: "reasoning"; val: Reasoning };

/** Another log that sent an input, and the key of its `send` effect. */
export interface LogSender {
  log: string;
  key: string;
}

/** Who an input came from. */
export type Sender =
  | { tag: "principal"; val: string }
  | { tag: "log"; val: LogSender };

/** Seq 0 of every log (and a fork's own `created`). */
export interface Created {
  guest: GuestRef;
  /** The session's configuration, as JSON text (an object). */
  configJson: string;
  /** Seeds the guest's deterministic randomness. */
  seed: bigint;
  /** Set on a fork: the parent log and the last seq this log shares with it. */
  parent?: LogPos;
  /** Set on a compaction: the log this one continues, and where. */
  compactedFrom?: LogPos;
  /** Set on a compaction: what the old log said, in the guest's words. */
  summary?: string;
  /** The tools this session may ask for. */
  tools: ToolSpec[];
}

export interface Input {
  from: Sender;
  content: ContentBlock[];
}

export type Role = "user" | "assistant";

export interface Message {
  role: Role;
  content: ContentBlock[];
}

/** A request to a model, by alias: the host maps `model` to a provider. */
export interface ModelRequest {
  model: string;
  system?: string;
  /** The key of the model call whose request this one extends (rule 13). */
  extends?: string;
  messages: Message[];
  tools: ToolSpec[];
  maxTokens?: number;
}

/** A question for a human; the decision arrives as `approval-decided`. */
export interface Question {
  text: string;
}

/** A message to another session, delivered as its `input`. */
export interface SendRequest {
  /** The target session's id or name. */
  target: string;
  content: ContentBlock[];
}

/** What a guest wants done. */
export type EffectBody =
  | { tag: "model"; val: ModelRequest }
  | { tag: "tool"; val: ToolCall }
  | { tag: "ask"; val: Question }
  /** Wait until this unix time in ms. */
  | { tag: "sleep"; val: bigint }
  | { tag: "output"; val: ContentBlock[] }
  | { tag: "send"; val: SendRequest }
  | { tag: "compact"; val: string }
  | { tag: "finish"; val: string };

export interface ModelDigest {
  model: string;
  digest: string;
  summary: string;
}

/** What `requested` records of an async effect. */
export type RequestedEffect =
  | { tag: "model"; val: ModelDigest }
  | { tag: "tool"; val: ToolCall }
  | { tag: "ask"; val: Question }
  | { tag: "sleep"; val: bigint };

export interface Requested {
  key: string;
  effect: RequestedEffect;
}

export type StopReason =
  | "end-turn"
  | "tool-use"
  | "max-tokens"
  | "stop-sequence"
  | "refusal"
  | "other";

export interface Usage {
  inputTokens: bigint;
  outputTokens: bigint;
}

export interface ModelResponse {
  content: ContentBlock[];
  stopReason: StopReason;
  usage: Usage;
  provider: string;
  model: string;
}

export interface ToolOutput {
  content: string;
  isError: boolean;
  /** Typed content beside the text (images, resources). */
  parts: ToolPart[];
  /** The tool's structured result, as JSON text. */
  structured?: string;
}

export type Outcome =
  | { tag: "model"; val: ModelResponse }
  | { tag: "tool"; val: ToolOutput }
  | { tag: "timer-fired"; val?: undefined };

export interface Completed {
  key: string;
  outcome: Outcome;
}

export type ErrorKind =
  | "interrupted"
  | "timeout"
  | "rate-limited"
  | "unavailable"
  | "invalid-response"
  | "invalid-request"
  | "unsupported"
  | "other";

export interface Failed {
  key: string;
  kind: ErrorKind;
  message: string;
  /** True when the host will try again (the effect stays in flight). */
  retryable: boolean;
  attempt: number;
}

export interface ApprovalRequested {
  key: string;
  tool?: ToolCall;
  question?: Question;
}

export interface ApprovalDecided {
  key: string;
  allow: boolean;
  by: string;
  reason?: string;
}

export interface Output {
  key: string;
  content: ContentBlock[];
}

export interface Sent {
  key: string;
  target: string;
}

export interface GuestChanged {
  from: GuestRef;
  to: GuestRef;
}

export interface Finished {
  key: string;
  result: string;
}

export type EventBody =
  | { tag: "created"; val: Created }
  | { tag: "input"; val: Input }
  | { tag: "requested"; val: Requested }
  | { tag: "completed"; val: Completed }
  | { tag: "failed"; val: Failed }
  | { tag: "cancelled"; val: string }
  | { tag: "approval-requested"; val: ApprovalRequested }
  | { tag: "approval-decided"; val: ApprovalDecided }
  | { tag: "output"; val: Output }
  | { tag: "sent"; val: Sent }
  | { tag: "guest-changed"; val: GuestChanged }
  | { tag: "guest-failed"; val: string }
  | { tag: "finished"; val: Finished }
  | { tag: "continued"; val: string };

/** One event of the log: its position, the host's clock, what happened. */
export interface Event {
  seq: bigint;
  /** Unix ms, the host's clock when the event was written. */
  at: bigint;
  body: EventBody;
}
