"use strict";
// Checks routing.js against every vector of protos/routing_vectors.json (docs/routing.md).
// Usage: node conformance.js [path/to/routing_vectors.json]
// Prints the number of vectors checked; exits 1 on any mismatch.

const fs = require("node:fs");
const path = require("node:path");
const routing = require("./routing");

const DEFAULT_VECTORS = path.resolve(__dirname, "..", "..", "protos", "routing_vectors.json");

function main(argv) {
  const file = argv[0] || DEFAULT_VECTORS;
  const { vectors } = JSON.parse(fs.readFileSync(file, "utf8"));
  if (!Array.isArray(vectors) || vectors.length === 0) {
    console.error(`no vectors in ${file}`);
    return 1;
  }
  const failures = [];
  for (const [i, v] of vectors.entries()) {
    const got = routing.draw(v.domain, v.salt, v.key);
    const selected = got.bucket < v.canary_ppm;
    const wrong = [];
    if (got.u64 !== v.u64) wrong.push(`u64 ${got.u64} != ${v.u64}`);
    if (got.bucket !== v.bucket) wrong.push(`bucket ${got.bucket} != ${v.bucket}`);
    if (!Object.is(got.position, v.position)) wrong.push(`position ${got.position} != ${v.position}`);
    if (selected !== v.in_canary) wrong.push(`in_canary ${selected} != ${v.in_canary}`);
    if (wrong.length) {
      failures.push(`vector ${i} (${v.domain}, ${JSON.stringify(v.salt)}, ${JSON.stringify(v.key)}): ${wrong.join("; ")}`);
    }
  }
  for (const f of failures) console.error(f);
  const checked = vectors.length;
  console.log(`node routing conformance: ${checked} vectors checked, ${failures.length} mismatches`);
  return failures.length ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
