/**
 * A TCP proxy in front of the gateway that breaks a connection the way a network does:
 * once the answer has carried `after` content events, it resets the connection (`cut`),
 * or stops forwarding and holds it open (`stall`), or resets it and refuses every later
 * connection (`down`). Only the first connection to get that far is broken.
 */

import net from "node:net";

export type Fault = "cut" | "stall" | "down";

const MARKER = "event: content";

export class BreakingProxy {
  readonly url: string;
  /** connections broken so far */
  broken = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #refusing = false;

  private constructor(server: net.Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(target: string, fault: Fault, after: number): Promise<BreakingProxy> {
    const { hostname, port } = new URL(target);
    let proxy: BreakingProxy | undefined;
    const server = net.createServer((client) => proxy?.connection(client, hostname, Number(port), fault, after));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address() as net.AddressInfo;
    proxy = new BreakingProxy(server, `http://127.0.0.1:${address.port}`);
    return proxy;
  }

  connection(client: net.Socket, host: string, port: number, fault: Fault, after: number): void {
    if (this.#refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(port, host);
    this.#sockets.add(client).add(upstream);
    let seen = 0;
    let tail = "";
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk: Buffer) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      client.write(chunk);
      const text = tail + chunk.toString("latin1");
      seen += text.split(MARKER).length - 1;
      tail = text.slice(-(MARKER.length - 1));
      if (this.broken > 0 || seen < after) return;
      this.broken += 1;
      if (fault === "stall") {
        upstream.pause(); // nothing more reaches the client, and nothing closes
        client.pause();
        return;
      }
      if (fault === "down") this.#refusing = true;
      client.resetAndDestroy(); // an RST, not a polite FIN: the network broke
      upstream.destroy();
    });
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", () => {
      if (!upstream.isPaused()) client.end();
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
