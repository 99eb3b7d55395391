// The globals a componentize-js (StarlingMonkey) guest has beyond ES2022 and
// that the SDK uses. Declared here rather than pulling in the DOM's types,
// most of which a guest does not have.

declare class TextEncoder {
  encode(input?: string): Uint8Array;
}

declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}

declare const console: {
  log(...data: unknown[]): void;
  error(...data: unknown[]): void;
};
