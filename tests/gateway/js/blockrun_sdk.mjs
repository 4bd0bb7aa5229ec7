// BlockRun's TypeScript SDK (npm @blockrun/llm, pinned in package.json), unmodified, against a local gateway.
//
//   node tests/gateway/js/blockrun_sdk.mjs CONFIG.json OUT.json
//
// CONFIG: {"api_url": "http://127.0.0.1:PORT/api", "key": "0x..", "chat": CALL, "one_liner": CALL, "stream": CALL,
//          "stream_other": CALL, "openai": CALL, "messages": CALL, "throttled": CALL}, CALL = {model, messages, max_tokens}.
// Runs every call once and writes what it saw as one JSON object to OUT (tests/gateway/test_blockrun_js.py asserts
// on it). Every HTTP exchange is recorded by wrapping globalThis.fetch -- observing the SDK, not changing it -- so
// the test can tell a 402 probe from a pre-authorised payment and match each settlement to the body it paid for.
import { readFileSync, writeFileSync } from "node:fs";
import { AnthropicClient, LLMClient, OpenAI } from "@blockrun/llm";

const [configPath, outPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
if (process.env.BLOCKRUN_API_KEY) throw new Error("BLOCKRUN_API_KEY would switch the SDK to its API-key rail");

const exchanges = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  const signature = headers.get("payment-signature");
  const record = { url, method: init?.method ?? (input instanceof Request ? input.method : "GET"), paid: !!signature };
  if (signature) record.accepted = JSON.parse(Buffer.from(signature, "base64").toString("utf8")).accepted;
  if (typeof init?.body === "string") record.body = JSON.parse(init.body);
  exchanges.push(record);
  const response = await realFetch(input, init);
  record.status = response.status;
  const settlement = response.headers.get("payment-response");
  if (settlement) record.settlement = JSON.parse(Buffer.from(settlement, "base64").toString("utf8"));
  return response;
};

async function attempt(fn) {
  const from = exchanges.length;
  try {
    return { ...(await fn()), exchanges: exchanges.slice(from) };
  } catch (err) {
    return {
      error: { name: err?.name, message: String(err?.message ?? err), statusCode: err?.statusCode, response: err?.response },
      exchanges: exchanges.slice(from),
    };
  }
}

async function sseText(response) {
  // chatCompletionStream returns the raw fetch Response: read its SSE lines as an app would.
  const body = await response.text();
  let text = "";
  const lines = body.split("\n").filter((line) => line.startsWith("data: "));
  for (const line of lines.slice(0, -1)) text += JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? "";
  return { status: response.status, contentType: response.headers.get("content-type"), text, last: lines.at(-1) };
}

const opts = (call) => ({ maxTokens: call.max_tokens });
const client = new LLMClient({ privateKey: config.key, apiUrl: config.api_url });
const out = { started: Date.now() };

out.models = await attempt(async () => ({ ids: (await client.listModels()).map((m) => m.id) }));
out.chat = await attempt(async () => ({
  text: await client.chat(config.one_liner.model, config.one_liner.messages[0].content, opts(config.one_liner)),
}));
out.chat_completion = await attempt(async () => {
  const r = await client.chatCompletion(config.chat.model, config.chat.messages, opts(config.chat));
  return { text: r.choices[0].message.content, model: r.model, created: r.created };
});
// Same model twice: the second call signs the cached requirements and pays on its first request (pre-auth).
out.stream_first = await attempt(async () =>
  sseText(await client.chatCompletionStream(config.stream.model, config.stream.messages, opts(config.stream))));
out.stream_preauth = await attempt(async () =>
  sseText(await client.chatCompletionStream(config.stream.model, config.stream.messages, opts(config.stream))));
// A pricier body: the cached requirements now underpay, the gateway answers 402 and the SDK starts over.
out.stream_requote = await attempt(async () =>
  sseText(await client.chatCompletionStream(config.stream_other.model, config.stream_other.messages,
                                            opts(config.stream_other))));
out.throttled_paid = await attempt(async () => ({
  text: await client.chat(config.throttled.model, config.throttled.messages[0].content, opts(config.throttled)),
}));
out.throttled_probe = await attempt(async () => ({
  text: await client.chat(config.throttled.model, config.throttled.messages[0].content, opts(config.throttled)),
}));
out.spending = client.getSpending();

const openai = new OpenAI({ walletKey: config.key, baseURL: config.api_url });
out.openai = await attempt(async () => {
  const r = await openai.chat.completions.create({ ...config.openai });
  return { text: r.choices[0].message.content, object: r.object };
});
out.openai_stream = await attempt(async () => {
  let text = "";
  let chunks = 0;
  for await (const chunk of await openai.chat.completions.create({ ...config.openai, stream: true })) {
    chunks += 1;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  return { text, chunks };
});
out.anthropic = await attempt(async () => {
  const anthropic = new AnthropicClient({ privateKey: config.key, apiUrl: config.api_url });
  const r = await anthropic.messages.create({ ...config.messages });
  return { type: r.type, role: r.role, text: r.content[0].text, stop_reason: r.stop_reason };
});

out.seconds = (Date.now() - out.started) / 1000;
const manifest = new URL("../../../node_modules/@blockrun/llm/package.json", import.meta.url);
out.version = JSON.parse(readFileSync(manifest, "utf8")).version;
writeFileSync(outPath, JSON.stringify(out));
