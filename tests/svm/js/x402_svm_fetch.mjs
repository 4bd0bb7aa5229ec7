// The TypeScript x402 client for Solana, unmodified: @x402/fetch + @x402/svm (pinned in package.json).
//
//   node tests/svm/js/x402_svm_fetch.mjs CONFIG.json OUT.json
//
// CONFIG: {"secret": "<base58 64-byte secret>", "rpc_url": "http://127.0.0.1:PORT", "calls": [{"url", "method", "body"?}]}.
// The client is built as @x402/svm's README builds it, except for the RPC URL: `registerExactSvmScheme()` would use the
// public cluster RPC, so the scheme is constructed as `new ExactSvmScheme(signer, { rpcUrl })` (x402-protocol.md §7.1).
// Writes what it saw as one JSON object to OUT; the fetch handed to the client (tests/js/paying_fetch.mjs) records
// every exchange without changing it.
import { readFileSync, writeFileSync } from "node:fs";
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { x402Client } from "@x402/fetch";
import { payCalls } from "../../js/paying_fetch.mjs";
import { ExactSvmScheme } from "@x402/svm/exact/client";

const [configPath, outPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const version = JSON.parse(readFileSync(new URL("../../../node_modules/@x402/svm/package.json", import.meta.url), "utf8")).version;

const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(config.secret));
const client = new x402Client();
client.register("solana:*", new ExactSvmScheme(signer, { rpcUrl: config.rpc_url }));
const out = { version, address: signer.address };
out.calls = await payCalls(client, config.calls);
writeFileSync(outPath, JSON.stringify(out));
