#!/usr/bin/env node
// Compile contracts/*.sol with the pinned npm `solc` (solcjs, wasm; works offline) and write the artifact
// the Python dev chain loads: x402_middleware/devchain/artifacts/contracts.json.
//
//   npm ci && node scripts/build_contracts.mjs            # regenerate the committed artifact
//   node scripts/build_contracts.mjs --stdout              # print it instead (tests compare it)
//
// Settings are pinned (compiler version via package-lock.json, optimizer, evmVersion) so the output is
// reproducible; only the metadata hash at the end of the bytecode changes when comments change.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const EXPECTED_SOLC = "0.8.37";
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  // solc 0.8.37 defaults to osaka; pin an older fork for reproducible bytecode that any recent anvil runs.
  evmVersion: "cancun",
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.methodIdentifiers"] },
  },
};

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));

function loadSolc() {
  let solc;
  try {
    solc = require("solc");
  } catch (err) {
    console.error("build_contracts: npm package 'solc' not found; run `npm ci` at the repo root first.");
    process.exit(2);
  }
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + "+")) {
    console.error(`build_contracts: expected solc ${EXPECTED_SOLC}, found ${version}; run \`npm ci\`.`);
    process.exit(2);
  }
  return solc;
}

function main() {
  const toStdout = process.argv.includes("--stdout");
  const solc = loadSolc();
  const contractsDir = join(root, "contracts");
  const sources = {};
  for (const file of readdirSync(contractsDir).filter((f) => f.endsWith(".sol")).sort()) {
    sources[`contracts/${file}`] = { content: readFileSync(join(contractsDir, file), "utf8") };
  }
  const output = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings: SETTINGS })));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) console.error(e.formattedMessage);
  if (errors.length) process.exit(1);

  const contracts = {};
  for (const path of Object.keys(output.contracts).sort()) {
    for (const name of Object.keys(output.contracts[path]).sort()) {
      const c = output.contracts[path][name];
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts: nothing to deploy
      contracts[name] = {
        source: path,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        methodIdentifiers: c.evm.methodIdentifiers,
      };
    }
  }
  const artifact = {
    generator: "scripts/build_contracts.mjs",
    compiler: { solc: solc.version(), optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
    contracts,
  };
  const text = JSON.stringify(artifact, null, 1) + "\n";
  if (toStdout) {
    process.stdout.write(text);
    return;
  }
  const outPath = join(root, "x402_middleware", "devchain", "artifacts", "contracts.json");
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, text);
  for (const [name, c] of Object.entries(contracts)) {
    const init = (c.bytecode.length - 2) / 2;
    const runtime = (c.deployedBytecode.length - 2) / 2;
    console.error(`build_contracts: ${name}: initcode ${init} B, runtime ${runtime} B`);
  }
  console.error(`build_contracts: wrote ${outPath}`);
}

main();
