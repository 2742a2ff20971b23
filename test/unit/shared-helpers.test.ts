import { expect } from 'chai';
import { childEnv, runTool } from '../../shared/child.js';
import { KburError } from '../../shared/errors.js';
import { asideDataDir, heldRestoreId, KBUR_DIR, kburDir, restoredDataDir, workDataDir } from '../../shared/restore-names.js';
import { absPathSchema, agentAddressSchema, hostPortSchema } from '../../shared/schemas.js';

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail('expected a failure'),
    (e: unknown) => e,
  );
}

describe('runTool: every tool kbur runs', () => {
  it('returns what the tool wrote', async () => {
    const { stdout } = await runTool('sh', ['-c', 'echo out; echo err >&2'], { env: childEnv() });
    expect(stdout).to.equal('out\n');
  });

  it('reports a failing tool as a KburError naming it, with the last lines of its stderr', async () => {
    const err = await failure(runTool('sh', ['-c', 'for i in 1 2 3 4 5; do echo "line $i" >&2; done; exit 3'], { env: childEnv() }));
    expect(KburError.hasCode(err, 'INTERNAL'), String(err)).to.equal(true);
    expect((err as KburError).message).to.equal('sh -c failed: line 3 | line 4 | line 5');
  });

  it("says what failed in the caller's words, with its code, hint and as many lines as asked", async () => {
    const err = await failure(
      runTool('sh', ['-c', 'echo one >&2; echo two >&2; exit 1'], {
        env: childEnv(),
        failure: { code: 'FAILED_PRECONDITION', what: 'cannot list the databases', hint: 'check the server', lines: 1 },
      }),
    );
    expect(KburError.hasCode(err, 'FAILED_PRECONDITION'), String(err)).to.equal(true);
    expect((err as KburError).message).to.equal('cannot list the databases: two');
    expect((err as KburError).hint).to.equal('check the server');
  });

  it('names a tool that is not there, though it wrote nothing', async () => {
    const err = await failure(runTool('/nonexistent/kbur-tool', ['version']));
    expect((err as KburError).message).to.match(/^\/nonexistent\/kbur-tool version failed: .*ENOENT/);
  });

  it('reports an interruption as the abort, not as a failed tool', async () => {
    const ac = new AbortController();
    const run = runTool('sleep', ['30'], { signal: ac.signal });
    const reason = new Error('stopped by the operator');
    ac.abort(reason);
    expect(await failure(run)).to.equal(reason);
  });
});

describe('the names a restore gives what it moves', () => {
  it('keep the names the README gives the operator (an upgrade must find what an older kbur moved)', () => {
    expect(asideDataDir('/var/lib/etcd', 'r1')).to.equal('/var/lib/etcd.kbur-r1');
    expect(restoredDataDir('/var/lib/etcd', 'r1')).to.equal('/var/lib/etcd.kbur-r1-restored');
    expect(workDataDir('/var/lib/etcd', 'r1')).to.equal('/var/lib/etcd.kbur-restore-r1');
    expect(kburDir('/etc/kubernetes', 'aside', 'r1')).to.equal('/etc/kubernetes/kbur-aside-r1');
  });

  it("tell kbur's own folders in the kubernetes dir from the user's", () => {
    for (const kind of ['held', 'aside', 'unpack', 'restored'] as const) {
      expect(KBUR_DIR.test(kburDir('', kind, 'r1').replace(/^\//, ''))).to.equal(true);
    }
    expect(KBUR_DIR.test('manifests')).to.equal(false);
    expect(heldRestoreId('kbur-held-r1')).to.equal('r1');
    expect(heldRestoreId('kbur-aside-r1')).to.equal(undefined);
  });
});

describe('the shapes configs share', () => {
  it('take host:port and [IPv6]:port, and say whose address was wrong', () => {
    expect(hostPortSchema('127.0.0.1:7443').safeParse('10.0.0.11:7443').success).to.equal(true);
    expect(hostPortSchema('127.0.0.1:7443').safeParse('[fd00::1]:7443').success).to.equal(true);
    const bad = agentAddressSchema.safeParse('10.0.0.11');
    expect(bad.success).to.equal(false);
    expect(bad.error?.issues[0]?.message).to.equal('expected host:port of a kbur-agent, e.g. 10.0.0.11:7443');
  });

  it('take only absolute paths', () => {
    expect(absPathSchema.safeParse('/etc/kbur').success).to.equal(true);
    expect(absPathSchema.safeParse('etc/kbur').error?.issues[0]?.message).to.equal('expected an absolute path');
  });
});
