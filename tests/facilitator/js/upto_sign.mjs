// The TypeScript x402 `upto` client, unmodified: @x402/evm (pinned in package.json) signs one payment.
//
//   echo '{"key": "0x…", "requirements": {…}}' | node tests/facilitator/js/upto_sign.mjs
//
// Prints the payment's inner `payload` object (signature + permit2Authorization) as JSON on stdout.
import { readFileSync } from "node:fs";
import { privateKeyToAccount } from "viem/accounts";
import { toClientEvmSigner } from "@x402/evm";
import { UptoEvmScheme } from "@x402/evm/upto/client";

const { key, requirements } = JSON.parse(readFileSync(0, "utf8"));
const scheme = new UptoEvmScheme(toClientEvmSigner(privateKeyToAccount(key)));
const result = await scheme.createPaymentPayload(2, requirements);
process.stdout.write(JSON.stringify(result.payload));
