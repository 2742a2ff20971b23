import { Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { KburError } from '../../shared/errors.js';
import { parseManifest } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { WIRE_VERSION, peerVersion, versionMetadata, wireMismatch } from '../../shared/wire.js';

describe('version handshake', function () {
  it('accepts a peer of the same wire contract whatever its kbur version', function () {
    const md = versionMetadata();
    expect(peerVersion(md)).to.deep.equal({ kbur: KBUR_VERSION, wire: WIRE_VERSION });
    expect(wireMismatch({ kbur: '9.9.9', wire: WIRE_VERSION }, 'kbur-agent on node-1', 'the caller')).to.equal(undefined);
  });

  it('names both sides, both versions and which one to upgrade', function () {
    const newer = wireMismatch({ kbur: '9.9.9', wire: WIRE_VERSION + 1 }, 'kbur (the coordinator)', 'kbur-agent on node-1')!;
    expect(newer).to.be.instanceOf(KburError);
    expect(newer.code).to.equal('FAILED_PRECONDITION');
    expect(newer.message).to.equal(
      `kbur (the coordinator) is kbur ${KBUR_VERSION} (wire contract ${WIRE_VERSION}) and kbur-agent on node-1 is kbur 9.9.9 ` +
        `(wire contract ${WIRE_VERSION + 1}): they do not speak the same contract`,
    );
    expect(newer.hint).to.match(/^upgrade kbur \(the coordinator\)/);
    const none = wireMismatch(peerVersion(new Metadata()), 'kbur-agent on node-1', 'the caller (kbur-admin)')!;
    expect(none.message).to.include('(wire contract none)');
    expect(none.hint).to.match(/^upgrade the caller \(kbur-admin\)/);
  });
});

describe('manifest schemas', function () {
  it('refuses a manifest of a newer schema, naming the kbur that wrote it', function () {
    expect(() => parseManifest({ schemaVersion: 2, kburVersion: '2.0.0' }, 'm.json'))
      .to.throw(KburError, 'm.json has manifest schema 2 (written by kbur 2.0.0); this kbur reads schemas up to 1')
      .with.property('code', 'FAILED_PRECONDITION');
  });

  it('calls a manifest that is not one DATA_LOSS, naming the field', function () {
    expect(() => parseManifest({ schemaVersion: 1 }, 'm.json'))
      .to.throw(KburError, /m\.json is not a valid kbur manifest: kburVersion/)
      .with.property('code', 'DATA_LOSS');
  });
});
