// The TypeScript x402 client paying with `upto`, unmodified: @x402/fetch + @x402/evm's UptoEvmScheme (pinned in
// package.json).
//
//   node tests/gateway/js/x402_upto_fetch.mjs CONFIG.json OUT.json
//
// CONFIG: {"key": "0x<private key>", "calls": [{"url", "method"?, "body"?}]}. The signer is viem's
// privateKeyToAccount (the @x402/evm README's); the payer already has a Permit2 allowance (dev mode), so no RPC is
// needed. Writes what it saw as one JSON object to OUT; the fetch handed to the client records every exchange.
import { readFileSync, writeFileSync } from "node:fs";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { privateKeyToAccount } from "viem/accounts";

const [configPath, outPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const version = JSON.parse(readFileSync(new URL("../../../node_modules/@x402/evm/package.json", import.meta.url), "utf8")).version;

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

const account = privateKeyToAccount(config.key);
const client = new x402Client();
client.register("eip155:*", new UptoEvmScheme(account));
const out = { version, address: account.address, calls: [] };
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
