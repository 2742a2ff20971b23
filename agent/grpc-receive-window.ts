import type { Server } from '@grpc/grpc-js';

/**
 * 8 MiB HTTP/2 receive windows for the agent's gRPC server: uploads (a staged snapshot, a node
 * archive, a dump) otherwise cross 64 KiB windows one round trip at a time. grpc-js has a client
 * option for the window but none for its server, so this sets two of its private fields; if a
 * grpc-js release renames them, uploads get slower and nothing else changes.
 * Figure: with data-message-codec.ts, staging 300 MiB on three agents 11 s -> 5-9 s.
 * Guarded by test/unit/library-assumptions.test.ts (grpc-js 1.14, both fields, the windows a client sees).
 */
export const RECEIVE_WINDOW = 8 << 20;

/** The per-stream window, as the server's SETTINGS: call before the first bindAsync. */
export function widenStreamWindows(server: Server): Server {
  const options = (server as unknown as { commonServerOptions?: { settings?: Record<string, number> } }).commonServerOptions;
  if (options) options.settings = { ...options.settings, initialWindowSize: RECEIVE_WINDOW };
  return server;
}

/** The per-connection window of every session: call once bindAsync succeeded. */
export function widenSessionWindows(server: Server): void {
  const servers = (server as unknown as { http2Servers?: Map<EventSource, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const http2Server of servers.keys()) {
    http2Server.on('session', (session: Http2SessionLike) => {
      const widen = (): void => session.setLocalWindowSize?.(RECEIVE_WINDOW);
      session.on('connect', widen);
      widen();
    });
  }
}

type EventSource = { on(event: string, listener: (...args: never[]) => void): unknown };
type Http2SessionLike = { setLocalWindowSize?(n: number): void; on(e: string, f: () => void): void };
