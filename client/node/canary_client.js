#!/usr/bin/env node
"use strict";
// An example canaryserve client in plain Node.js: the .proto files are loaded from protos/ at
// run time with @grpc/proto-loader (no generated code, no build step).
//
//   node canary_client.js --target 127.0.0.1:8001 --token TOKEN [--model classifier]
//        [--key user-1 --key user-2 ...] [--input 0.1,0.2,0.3,0.4] [--timeout 10]
//
// Calls ServerLive, ServerReady, ModelMetadata, ModelInfer (raw FP32 [1,4], one call per
// routing key, key in `x-routing-key` metadata) and the admin service's ListRollouts and
// Route (with `authorization: Bearer TOKEN`). Prints one JSON object to stdout; exits 0 on
// success and non-zero on any failure (the error goes to stderr).

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const INFERENCE_PROTO = "protos/inference/grpc_service.proto";
const ADMIN_PROTO = "protos/canaryserve/admin/v1/admin.proto";
const ROUTING_KEY_HEADER = "x-routing-key";
const DEFAULT_KEYS = ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6", "user-7", "user-8"];
const DEFAULT_INPUT = [0.1, 0.2, 0.3, 0.4];

function usage(message) {
  const text =
    "usage: node canary_client.js --target HOST:PORT --token TOKEN [--model NAME] " +
    "[--key KEY]... [--input F,F,F,F] [--timeout SECONDS]";
  throw new UsageError(message ? `${message}\n${text}` : text);
}

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = { target: "", token: "", model: "classifier", keys: [], input: DEFAULT_INPUT, timeout: 10 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    if (flag === "-h" || flag === "--help") usage();
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case "--target": opts.target = value(); break;
      case "--token": opts.token = value(); break;
      case "--model": opts.model = value(); break;
      case "--key": opts.keys.push(value()); break;
      case "--timeout": opts.timeout = Number(value()); break;
      case "--input": opts.input = value().split(",").map(Number); break;
      default: usage(`unknown argument ${arg}`);
    }
  }
  if (!opts.target) usage("--target is required");
  if (!opts.token) usage("--token is required");
  if (!(opts.timeout > 0)) usage("--timeout must be a positive number");
  if (opts.input.length !== 4 || opts.input.some((x) => !Number.isFinite(x))) {
    usage("--input needs 4 comma-separated numbers (an FP32 [1,4] tensor)");
  }
  if (opts.keys.length === 0) opts.keys = DEFAULT_KEYS;
  return opts;
}

/** Loads both services from protos/ (google/protobuf/timestamp.proto: protobufjs's bundled copy). */
function loadProtos() {
  // The repository root is the include dir: the admin proto imports
  // google/protobuf/timestamp.proto, which no directory there holds. proto-loader ships no
  // .proto files of its own; protobufjs (its parser) resolves google/protobuf/*.proto imports
  // from the definitions bundled in it, before any include dir is searched.
  const definition = protoLoader.loadSync([INFERENCE_PROTO, ADMIN_PROTO], {
    includeDirs: [REPO_ROOT],
    keepCase: true, // field names as in the .proto (snake_case), as in every other client
    longs: String, // int64/uint64 as decimal strings: no silent precision loss
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  if (!definition["google.protobuf.Timestamp"]) {
    throw new Error("google.protobuf.Timestamp did not load (admin.proto imports it)");
  }
  const loaded = grpc.loadPackageDefinition(definition);
  return {
    Inference: loaded.inference.GRPCInferenceService,
    Admin: loaded.canaryserve.admin.v1.AdminService,
  };
}

function call(client, method, request, metadata, timeoutSeconds) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutSeconds * 1000);
    client[method](request, metadata, { deadline }, (err, response) => {
      if (err) {
        const code = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) || err.code;
        reject(new Error(`${method} failed: ${code}: ${err.details || err.message}`));
      } else {
        resolve(response);
      }
    });
  });
}

/** Little-endian FP32 bytes of a flat array (the wire order of raw_input_contents). */
function encodeFp32(values) {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf;
}

/** raw_output_contents bytes → Float32Array, read little-endian whatever the host order. */
function decodeFp32(raw) {
  if (raw.length % 4 !== 0) throw new Error(`FP32 output of ${raw.length} bytes is not a multiple of 4`);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const out = new Float32Array(raw.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** An InferParameter (oneof parameter_choice) → its plain value. */
function paramValue(p) {
  if (!p || !p.parameter_choice) return null;
  const value = p[p.parameter_choice];
  return p.parameter_choice === "int64_param" || p.parameter_choice === "uint64_param" ? Number(value) : value;
}

function tensorMeta(t) {
  return { name: t.name, datatype: t.datatype, shape: t.shape.map(Number) };
}

function timestamp(ts) {
  if (!ts) return null;
  const ms = Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
  return new Date(ms).toISOString();
}

function rolloutJson(r) {
  return {
    model: r.model,
    stable_version: r.stable_version,
    candidate_version: r.candidate_version,
    phase: r.phase,
    canary_weight_ppm: r.canary_weight_ppm,
    shadow_rate_ppm: r.shadow_rate_ppm,
    paused: r.paused,
    revision: Number(r.revision),
    rollout_id: Number(r.rollout_id),
    automatic: r.automatic,
    updated_at: timestamp(r.updated_at),
  };
}

async function run(opts) {
  const { Inference, Admin } = loadProtos();
  const credentials = grpc.credentials.createInsecure();
  const channelOptions = {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  };
  const inference = new Inference(opts.target, credentials, channelOptions);
  const admin = new Admin(opts.target, credentials, channelOptions);
  try {
    const none = new grpc.Metadata();
    const auth = new grpc.Metadata();
    auth.set("authorization", `Bearer ${opts.token}`);
    const t = opts.timeout;

    const live = (await call(inference, "ServerLive", {}, none, t)).live;
    const ready = (await call(inference, "ServerReady", {}, none, t)).ready;
    if (!live || !ready) throw new Error(`server not live/ready (live=${live}, ready=${ready})`);

    const meta = await call(inference, "ModelMetadata", { name: opts.model, version: "" }, none, t);
    const metadata = {
      name: meta.name,
      versions: meta.versions,
      platform: meta.platform,
      inputs: meta.inputs.map(tensorMeta),
      outputs: meta.outputs.map(tensorMeta),
    };
    if (metadata.inputs.length !== 1) throw new Error(`expected one input, got ${metadata.inputs.length}`);
    const inputName = metadata.inputs[0].name;

    const infer = [];
    for (const key of opts.keys) {
      const md = new grpc.Metadata();
      md.set(ROUTING_KEY_HEADER, key);
      const response = await call(
        inference,
        "ModelInfer",
        {
          model_name: opts.model,
          inputs: [{ name: inputName, datatype: "FP32", shape: [1, opts.input.length] }],
          raw_input_contents: [encodeFp32(opts.input)],
        },
        md,
        t,
      );
      if (response.raw_output_contents.length !== response.outputs.length) {
        throw new Error("ModelInfer: expected raw_output_contents for every output");
      }
      const outputs = {};
      response.outputs.forEach((out, i) => {
        if (out.datatype !== "FP32") throw new Error(`output ${out.name}: datatype ${out.datatype}, expected FP32`);
        outputs[out.name] = {
          datatype: out.datatype,
          shape: out.shape.map(Number),
          data: Array.from(decodeFp32(response.raw_output_contents[i])),
        };
      });
      const params = {};
      for (const [name, p] of Object.entries(response.parameters)) params[name] = paramValue(p);
      if (typeof params.stage !== "string" || typeof params.route_reason !== "string") {
        throw new Error(`ModelInfer for key ${key}: response lacks stage/route_reason parameters`);
      }
      infer.push({
        key,
        model_name: response.model_name,
        model_version: response.model_version,
        stage: params.stage,
        route_reason: params.route_reason,
        outputs,
      });
    }

    const rollouts = (await call(admin, "ListRollouts", {}, auth, t)).rollouts.map(rolloutJson);
    const route = [];
    for (const key of opts.keys) {
      const r = await call(admin, "Route", { model: opts.model, routing_key: key, metadata: {} }, auth, t);
      route.push({
        key,
        version: r.version,
        stage: r.stage,
        reason: r.reason,
        position: r.position,
        shadow_version: r.shadow_version,
      });
    }

    return {
      client: "node",
      target: opts.target,
      model: opts.model,
      input: opts.input,
      live,
      ready,
      metadata,
      infer,
      rollouts,
      route,
    };
  } finally {
    inference.close();
    admin.close();
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    return 2;
  }
  try {
    const result = await run(opts);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } catch (err) {
    console.error(`canary_client: ${err.message}`);
    return 1;
  }
}

main().then((code) => {
  process.exitCode = code;
});
