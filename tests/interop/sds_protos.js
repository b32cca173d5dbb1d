// The SDS service and the Secret message, loaded from our own .proto files
// (tests/interop/proto) for the node harnesses that speak SDS, as client
// (envoy_sds.js) or as a scripted server (sds_server_script.js).
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.join(__dirname, 'proto');

function loadSdsProtos() {
  const def = loader.loadSync(['envoy/service/secret/v3/sds.proto'], {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
    includeDirs: [PROTO_DIR],
  });
  const pkg = grpc.loadPackageDefinition(def);
  // The resources are Any; their value is encoded and decoded with protobufjs directly.
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    const p = path.join(PROTO_DIR, target);
    return fs.existsSync(p) ? p : target;  // google/protobuf/* come with protobufjs
  };
  root.loadSync('envoy/extensions/transport_sockets/tls/v3/secret.proto', { keepCase: true });
  return {
    Sds: pkg.envoy.service.secret.v3.SecretDiscoveryService,
    Secret: root.lookupType('envoy.extensions.transport_sockets.tls.v3.Secret'),
  };
}

module.exports = { loadSdsProtos };
