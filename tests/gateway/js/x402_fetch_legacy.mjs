// The legacy v1 npm client x402-fetch (pinned in package.json), unmodified, against a local gateway.
//
//   node tests/gateway/js/x402_fetch_legacy.mjs CONFIG.json OUT.json
//
// CONFIG: {"url": "http://127.0.0.1:PORT/api/v1/chat/completions", "key": "0x..", "rpc_url": "http://127.0.0.1:PORT",
//          "calls": {NAME: BODY, ...}}. Pays one chat completion per call, each with the client as its tutorial
// builds it: "account" with `wrapFetchWithPayment(fetch, account)` (a viem local account), "wallet" with a viem wallet
// client on Base (chain id 8453, the dev chain emulates it; the transport points at the dev chain's RPC).
// Writes what it saw as one JSON object to OUT (tests/gateway/test_legacy_v1_clients.py asserts on it). The fetch
// handed to the client records every exchange -- observing it, not changing it.
import { readFileSync, writeFileSync } from "node:fs";
import { createWalletClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { base } from "viem/chains";
import { decodeXPaymentResponse, wrapFetchWithPayment } from "x402-fetch";

const [configPath, outPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const manifest = new URL("../../../node_modules/x402-fetch/package.json", import.meta.url);
const version = JSON.parse(readFileSync(manifest, "utf8")).version;

function recordingFetch(exchanges) {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    const payment = headers.get("x-payment");
    const record = { paid: !!payment };
    if (payment) record.payment = JSON.parse(Buffer.from(payment, "base64").toString("utf8"));
    exchanges.push(record);
    const response = await fetch(input, init);
    record.status = response.status;
    const settlement = response.headers.get("x-payment-response");
    if (settlement) record.settlement = decodeXPaymentResponse(settlement);
    if (response.status === 402) record.body = await response.clone().json();
    return response;
  };
}

const account = privateKeyToAccount(config.key);
const signers = {
  account,
  wallet: createWalletClient({ account, chain: base, transport: http(config.rpc_url) }),
};
const out = { version, address: account.address };
for (const [name, body] of Object.entries(config.calls)) {
  const exchanges = [];
  const pay = wrapFetchWithPayment(recordingFetch(exchanges), signers[name]);
  try {
    const response = await pay(config.url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    out[name] = { status: response.status, json: await response.json(), exchanges };
  } catch (err) {
    out[name] = { error: { name: err?.name, message: String(err?.message ?? err) }, exchanges };
  }
}
writeFileSync(outPath, JSON.stringify(out));
