// The TypeScript x402 client for Solana, unmodified: @x402/fetch + @x402/svm (pinned in package.json).
//
//   node tests/svm/js/x402_svm_fetch.mjs CONFIG.json OUT.json
//
// CONFIG: {"secret": "<base58 64-byte secret>", "rpc_url": "http://127.0.0.1:PORT", "calls": [{"url", "method", "body"?}]}.
// The client is built as @x402/svm's README builds it, except for the RPC URL: `registerExactSvmScheme()` would use the
// public cluster RPC, so the scheme is constructed as `new ExactSvmScheme(signer, { rpcUrl })` (x402-protocol.md §7.1).
// Writes what it saw as one JSON object to OUT; the fetch handed to the client records every exchange without changing it.
import { readFileSync, writeFileSync } from "node:fs";
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";

const [configPath, outPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const version = JSON.parse(readFileSync(new URL("../../../node_modules/@x402/svm/package.json", import.meta.url), "utf8")).version;

function recordingFetch(exchanges) {
  return async (input, init) => {
    const request = new Request(input, init);
    const payment = request.headers.get("payment-signature");
    const record = { paid: !!payment };
    if (payment) record.payment = JSON.parse(Buffer.from(payment, "base64").toString("utf8"));
    exchanges.push(record);
    const response = await fetch(request);
    record.status = response.status;
    const settlement = response.headers.get("payment-response");
    if (settlement) record.settlement = decodePaymentResponseHeader(settlement);
    const required = response.headers.get("payment-required");
    if (required) record.required = JSON.parse(Buffer.from(required, "base64").toString("utf8"));
    return response;
  };
}

const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(config.secret));
const client = new x402Client();
client.register("solana:*", new ExactSvmScheme(signer, { rpcUrl: config.rpc_url }));
const out = { version, address: signer.address, calls: [] };
for (const call of config.calls) {
  const exchanges = [];
  const pay = wrapFetchWithPayment(recordingFetch(exchanges), client);
  try {
    const init = { method: call.method ?? "GET", headers: { "Content-Type": "application/json" } };
    if (call.body !== undefined) init.body = JSON.stringify(call.body);
    const response = await pay(call.url, init);
    const text = await response.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    out.calls.push({ status: response.status, json, text: json === null ? text : undefined, exchanges });
  } catch (err) {
    out.calls.push({ error: { name: err?.name, message: String(err?.message ?? err) }, exchanges });
  }
}
writeFileSync(outPath, JSON.stringify(out));
