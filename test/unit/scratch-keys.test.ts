import { expect } from 'chai';
import { hasOwnerReferences } from '../../coordinator/restore/owner.js';
import { shortResource } from '../../coordinator/restore/namespace.js';
import { parseKey, prefixEnd } from '../../coordinator/scratch/keys.js';

/** A protobuf length-delimited field (tag, length, bytes): enough to build what the apiserver stores. */
function pb(field: number, bytes: Buffer): Buffer {
  const varint = (n: number): Buffer => {
    const out: number[] = [];
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
    return Buffer.from(out);
  };
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

/** A Pod as the apiserver stores it with the protobuf media type: k8s\0, runtime.Unknown{typeMeta, raw: Pod{metadata}}. */
function protobufPod(meta: Buffer): Buffer {
  const typeMeta = Buffer.concat([pb(1, Buffer.from('v1')), pb(2, Buffer.from('Pod'))]);
  const pod = Buffer.concat([pb(1, meta), pb(2, Buffer.from([]))]);
  return Buffer.concat([Buffer.from('k8s\0', 'latin1'), pb(1, typeMeta), pb(2, pod), pb(3, Buffer.from(''))]);
}

describe('Kubernetes keys in etcd', function () {
  it('names the resource, namespace and name of namespaced, cluster-scoped and grouped objects', function () {
    expect(parseKey('/registry/configmaps/demo/app-config-1')).to.deep.equal({
      resource: 'configmaps',
      namespace: 'demo',
      name: 'app-config-1',
    });
    expect(parseKey('/registry/namespaces/demo')).to.deep.equal({ resource: 'namespaces', name: 'demo' });
    expect(parseKey('/registry/services/specs/default/kubernetes')).to.deep.equal({
      resource: 'services/specs',
      namespace: 'default',
      name: 'kubernetes',
    });
    expect(parseKey('/registry/services/endpoints/demo/web')).to.deep.equal({
      resource: 'services/endpoints',
      namespace: 'demo',
      name: 'web',
    });
    expect(parseKey('/registry/apiregistration.k8s.io/apiservices/v1.apps')).to.deep.equal({
      resource: 'apiregistration.k8s.io/apiservices',
      name: 'v1.apps',
    });
    expect(parseKey('/registry/example.com/widgets/demo/w1')).to.deep.equal({
      resource: 'example.com/widgets',
      namespace: 'demo',
      name: 'w1',
    });
    expect(parseKey('/kbur-test/a')).to.deep.equal({ resource: '(other)', name: '/kbur-test/a' });
  });

  it('gives the names an operator types for --resource', function () {
    expect(shortResource('services/endpoints')).to.equal('endpoints');
    expect(shortResource('services/specs')).to.equal('services');
    expect(shortResource('example.com/widgets')).to.equal('widgets');
    expect(shortResource('configmaps')).to.equal('configmaps');
  });

  it('ends a prefix range where etcdctl --prefix does', function () {
    expect(prefixEnd(Buffer.from('/registry/')).toString()).to.equal('/registry0');
    expect(prefixEnd(Buffer.from([0x61, 0xff]))).to.deep.equal(Buffer.from([0x62]));
    expect(prefixEnd(Buffer.from([0xff]))).to.deep.equal(Buffer.from([0]));
  });
});

describe('ownerReferences of a stored pod', function () {
  it('reads them from JSON', function () {
    const owned = { metadata: { name: 'web-1', ownerReferences: [{ kind: 'ReplicaSet', name: 'web', controller: true }] } };
    expect(hasOwnerReferences(Buffer.from(JSON.stringify(owned)))).to.equal('yes');
    expect(hasOwnerReferences(Buffer.from(JSON.stringify({ metadata: { name: 'alone' } })))).to.equal('no');
  });

  it('reads them from protobuf (field 13 of ObjectMeta)', function () {
    const name = pb(1, Buffer.from('web-1'));
    const ownerRef = pb(13, Buffer.concat([pb(1, Buffer.from('ReplicaSet')), pb(3, Buffer.from('web'))]));
    expect(hasOwnerReferences(protobufPod(Buffer.concat([name, ownerRef])))).to.equal('yes');
    expect(hasOwnerReferences(protobufPod(name))).to.equal('no');
  });

  it('says unknown for what it cannot read: encrypted at rest, damaged protobuf, not an object', function () {
    expect(hasOwnerReferences(Buffer.from('k8s:enc:aescbc:v1:key1:\x8a\x01\x02'))).to.equal('unknown');
    expect(hasOwnerReferences(Buffer.concat([Buffer.from('k8s\0', 'latin1'), Buffer.from([0x12, 0x7f, 0x01])]))).to.equal('unknown');
    expect(hasOwnerReferences(Buffer.from('"just a string"'))).to.equal('unknown');
  });
});
