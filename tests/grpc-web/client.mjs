// A real gRPC-Web client for the gateway's tests (tests/tests/api/gateway/grpc_web.rs):
// Connect's gRPC-Web transport for Node over HTTP/1.1, as a browser app would use it, with
// the gateway's service read at run time from the suite's descriptor set (no generated
// code). It signs in, reads GetMe, tries a wrong password, and prints one JSON line.
//
// node client.mjs DESCRIPTOR_SET_FILE BASE_URL EMAIL PASSWORD

import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";

const [descriptorFile, baseUrl, email, password] = process.argv.slice(2);
const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(descriptorFile)),
);
const service = registry.getService("keycontacts.gateway.v1.GatewayService");
if (!service) throw new Error("GatewayService is not in the descriptor set");
const client = createClient(service, createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }));

const session = await client.login({ email, password });
const me = await client.getMe(
  {},
  { headers: { authorization: `Bearer ${session.accessToken}` } },
);
let wrongPassword;
try {
  await client.login({ email, password: `${password} but wrong` });
  wrongPassword = "OK";
} catch (error) {
  wrongPassword = Code[ConnectError.from(error).code];
}
console.log(
  JSON.stringify({
    userId: session.user?.userId,
    meEmail: me.user?.email,
    wrongPassword,
  }),
);
