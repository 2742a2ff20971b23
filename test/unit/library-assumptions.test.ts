import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createWriteStream, type WriteStream } from 'node:fs';
import { connect, type ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { AgentServiceService, SnapshotEtcdResponse } from '../../proto/gen/kbur/v1/agent.js';
import { decodeSnapshotResponse } from '../../agent/etcd/snapshot-stream.js';
import { RECEIVE_WINDOW, widenSessionWindows, widenStreamWindows } from '../../agent/grpc-receive-window.js';
import { AgentService } from '../../shared/agent-service.js';
import { decodeDataMessage } from '../../shared/data-message-codec.js';

/**
 * Where kbur works around a library for speed, what it relies on. After upgrading grpc-js,
 * @bufbuild/protobuf or Node, a failure here names the module to recheck (keep it, adapt it, or
 * drop it for the library's way), before a silent slowdown or a wrong byte reaches a backup.
 */

const repo = fileURLToPath(new URL('../../../', import.meta.url));

async function installedVersion(name: string): Promise<string> {
  return (JSON.parse(await readFile(join(repo, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The methods whose data messages go through shared/data-message-codec.ts, and which side carries them. */
const STREAMED = {
  snapshotEtcd: 'response',
  runDump: 'response',
  archiveKubernetes: 'response',
  keepSnapshot: 'request',
  stageSnapshot: 'request',
  restoreKubernetesDir: 'request',
  restoreDump: 'request',
} as const;

describe('library assumptions behind the speed work', () => {
  describe('shared/data-message-codec.ts (the artifact streams’ data messages)', () => {
    it('runs on @bufbuild/protobuf 2.x, whose generated code it stands beside', async () => {
      expect(await installedVersion('@bufbuild/protobuf')).to.match(
        /^2\./,
        '@bufbuild/protobuf changed major: recheck shared/data-message-codec.ts and agent/etcd/snapshot-stream.ts, then update this pin',
      );
    });

    it('writes, for every streamed method, the bytes the generated encoder writes', () => {
      const msg = { kind: { $case: 'data', value: randomBytes(70_000) } };
      for (const [name, side] of Object.entries(STREAMED)) {
        const key = `${side}Serialize`;
        const ours = (AgentService as unknown as Record<string, Record<string, (v: unknown) => Buffer>>)[name]![key]!;
        const generated = (AgentServiceService as unknown as Record<string, Record<string, (v: unknown) => Buffer>>)[name]![key]!;
        expect(
          ours(msg).equals(generated(msg)),
          `${name}: its data message differs from the generated encoder's: recheck shared/data-message-codec.ts`,
        ).to.equal(true);
      }
    });

    it('is still needed: the generated decoder copies a data message’s bytes, the codec reads them in place', () => {
      const wire = Buffer.from(SnapshotEtcdResponse.encode({ kind: { $case: 'data', value: randomBytes(70_000) } }).finish());
      const generated = SnapshotEtcdResponse.decode(wire).kind;
      const ours = decodeDataMessage(2, wire)!;
      const last = wire.length - 1;
      const was = wire[last]!;
      wire[last] = was ^ 0xff;
      expect(ours[ours.length - 1]).to.equal(wire[last], 'the codec no longer reads in place: recheck shared/data-message-codec.ts');
      expect(generated?.$case === 'data' && generated.value[generated.value.length - 1]).to.equal(
        was,
        'the generated decoder no longer copies bytes fields: shared/data-message-codec.ts may not be worth keeping',
      );
    });
  });

  describe('agent/etcd/snapshot-stream.ts (etcd’s snapshot pieces decoded as views)', () => {
    it('gets each blob as a view into the message etcd sent, from @bufbuild/protobuf’s BinaryReader', () => {
      const blob = randomBytes(32 << 10);
      const header = new BinaryWriter().tag(3, WireType.Varint).int64(9).finish();
      const w = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.Varint).uint64(1);
      const received = Buffer.from(w.tag(3, WireType.LengthDelimited).bytes(blob).finish());
      const piece = decodeSnapshotResponse(received);
      expect(piece.blob.equals(blob)).to.equal(true);
      received[received.length - 1] ^= 0xff;
      expect(piece.blob[piece.blob.length - 1]).to.equal(
        received[received.length - 1],
        'BinaryReader.bytes() no longer returns a view: every snapshot piece is copied again; recheck agent/etcd/snapshot-stream.ts',
      );
    });
  });

  describe('agent/grpc-receive-window.ts (grpc-js private fields)', () => {
    it('runs on grpc-js 1.14, whose private fields it sets', async () => {
      expect(await installedVersion('@grpc/grpc-js')).to.match(
        /^1\.14\./,
        'grpc-js changed: recheck agent/grpc-receive-window.ts (Server.commonServerOptions, Server.http2Servers; or a server window option now), then update this pin',
      );
    });

    it('gives a client 8 MiB windows, per stream and per connection', async () => {
      const server = new Server();
      expect(
        (server as unknown as { commonServerOptions?: unknown }).commonServerOptions,
        'grpc-js Server.commonServerOptions is gone',
      ).to.be.an('object');
      widenStreamWindows(server);
      let client: ClientHttp2Session | undefined;
      try {
        const port = await new Promise<number>((resolve, reject) =>
          server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
        );
        expect((server as unknown as { http2Servers?: unknown }).http2Servers, 'grpc-js Server.http2Servers is gone').to.be.instanceOf(Map);
        widenSessionWindows(server);
        const session = connect(`http://127.0.0.1:${port}`);
        client = session;
        session.on('error', () => undefined);
        await once(session, 'remoteSettings');
        expect(session.remoteSettings.initialWindowSize).to.equal(
          RECEIVE_WINDOW,
          'the agent no longer announces its stream window: recheck agent/grpc-receive-window.ts',
        );
        // The ping's answer comes after the window update the server sent when the session opened.
        await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
        expect(session.state.remoteWindowSize).to.equal(
          RECEIVE_WINDOW,
          'the agent no longer widens its connection window: recheck agent/grpc-receive-window.ts',
        );
      } finally {
        client?.close();
        server.forceShutdown();
      }
    });
  });

  describe('coordinator/code-cache.cts (V8’s code cache for the npm-run kbur)', () => {
    const bundle = fileURLToPath(new URL('../../coordinator/kbur-bundle.cjs', import.meta.url));
    const loader = fileURLToPath(new URL('../../coordinator/code-cache.cjs', import.meta.url));

    /** Whether V8 rejected the cache beside `file`, compiled by the loader under the launcher's shebang flags. */
    async function rejected(file: string): Promise<string> {
      const shebang = (await readFile(join(repo, 'coordinator', 'kbur.cts'), 'utf8')).split('\n')[0]!;
      const flags = shebang.replace('#!/usr/bin/env -S node', '').trim().split(/\s+/).filter(Boolean);
      const probe = `process.stdout.write(String(require(${JSON.stringify(loader)}).compileBundle(${JSON.stringify(file)}).cachedDataRejected))`;
      return execFileSync(process.execPath, [...flags, '-e', probe], { encoding: 'utf8' });
    }

    it('has V8 take the cache the build wrote, under the flags kbur runs with', async () => {
      expect(await rejected(bundle)).to.equal(
        'false',
        'V8 rejects the code cache of the build: every kbur start compiles the bundle again (~55 ms); recheck coordinator/code-cache.cts and scripts/bundle.ts',
      );
    });

    it('is ASCII only, so that V8 keeps its 5.7 MB source as one-byte, not two-byte, string (scripts/bundle.ts)', async () => {
      const text = await readFile(bundle, 'latin1');
      const first = text.search(/[^\t\n\r -~]/);
      expect(first, `a character outside ASCII at offset ${first}: ${JSON.stringify(text.slice(first - 40, first + 40))}`).to.equal(-1);
    });

    it('has V8 refuse that cache for any other source, which then compiles as if there were none', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kbur-code-cache-'));
      try {
        const other = join(dir, 'kbur-bundle.cjs');
        await writeFile(other, `${await readFile(bundle, 'utf8')}\n;0;`);
        await copyFile(`${bundle}.cache`, `${other}.cache`);
        expect(await rejected(other)).to.equal('true', 'V8 took a code cache made for another source');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('shared/streams.ts (AtomicFile flushes early through the WriteStream’s fd)', () => {
    it('finds the fd of an fs.WriteStream once it is open', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kbur-fd-'));
      const stream: WriteStream = createWriteStream(join(dir, 'f'));
      try {
        await once(stream, 'open');
        expect((stream as WriteStream & { fd?: unknown }).fd).to.be.a(
          'number',
          'fs.WriteStream has no fd: AtomicFile no longer flushes while it writes (commit fsyncs everything at the end); recheck shared/streams.ts',
        );
      } finally {
        stream.destroy();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
