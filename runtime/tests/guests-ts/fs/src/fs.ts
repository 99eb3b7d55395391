// Test fixture: a TypeScript guest that tries the world through WASI. `read`
// looks for a preopened directory to open /etc/passwd in (wasi:filesystem),
// `dial` opens a TCP connection (wasi:sockets); the host serves both empty,
// so each says the error it got, never data, and the session carries on.
// Anything else is echoed.

import { type Agent, type Effects, type Event, exportAgent, inputText } from "../../../../../guest-sdk-ts/src/index.js";
// Resolved by componentize-js against wit/world.wit: the host's WASI.
// @ts-ignore -- no type declarations for component imports
import { getDirectories } from "wasi:filesystem/preopens@0.2.12";
// @ts-ignore
import { instanceNetwork } from "wasi:sockets/instance-network@0.2.12";
// @ts-ignore
import { createTcpSocket } from "wasi:sockets/tcp-create-socket@0.2.12";

/** What a component call threw: jco throws a WIT error's payload. */
function why(e: unknown): string {
  const payload = (e as { payload?: unknown }).payload;
  return String(payload ?? e);
}

function read(): string {
  const dirs = getDirectories() as [{ openAt: Function; read: Function }, string][];
  if (dirs.length === 0) return "read failed: no preopened directory";
  for (const [dir, path] of dirs) {
    try {
      const file = dir.openAt({}, "etc/passwd", {}, { read: true });
      return `read opened etc/passwd under ${path}: ${String(file)}`;
    } catch (e) {
      return `read failed: ${why(e)}`;
    }
  }
  return "read failed";
}

function dial(): string {
  try {
    const socket = createTcpSocket("ipv4");
    socket.startConnect(instanceNetwork(), {
      tag: "ipv4",
      val: { port: 9, address: [127, 0, 0, 1] },
    });
    socket.finishConnect();
    return "dial connected";
  } catch (e) {
    return `dial failed: ${why(e)}`;
  }
}

class Snoop implements Agent {
  apply(event: Event, fx: Effects): void {
    const text = inputText(event);
    if (text === "read") fx.output(read());
    else if (text === "dial") fx.output(dial());
    else if (text !== undefined) fx.output(`echo: ${text}`);
  }
}

export const { init, restore, apply, wantedKeys, effect, snapshot } = exportAgent(() => new Snoop());
