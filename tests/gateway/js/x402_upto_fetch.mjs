// The TypeScript x402 client paying with `upto`, unmodified: @x402/fetch + @x402/evm's UptoEvmScheme (pinned in
// package.json).
//
//   node tests/gateway/js/x402_upto_fetch.mjs CONFIG.json OUT.json
//
// CONFIG: {"key": "0x<private key>", "calls": [{"url", "method"?, "body"?}]}. The signer is viem's
// privateKeyToAccount (the @x402/evm README's); the payer already has a Permit2 allowance (dev mode), so no RPC is
// needed. Writes what it saw as one JSON object to OUT; the fetch handed to the client (tests/js/paying_fetch.mjs)
// records every exchange.
import { readFileSync, writeFileSync } from "node:fs";
import { x402Client } from "@x402/fetch";
import { payCalls } from "../../js/paying_fetch.mjs";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { privateKeyToAccount } from "viem/accounts";

const [configPath, outPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const version = JSON.parse(readFileSync(new URL("../../../node_modules/@x402/evm/package.json", import.meta.url), "utf8")).version;

const account = privateKeyToAccount(config.key);
const client = new x402Client();
client.register("eip155:*", new UptoEvmScheme(account));
const out = { version, address: account.address };
out.calls = await payCalls(client, config.calls);
writeFileSync(outPath, JSON.stringify(out));
