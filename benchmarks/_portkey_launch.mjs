// Serve Portkey's bundled gateway (node_modules/@portkey-ai/gateway/build/start-server.js) for benchmarks/peers.py:
//
//     node _portkey_launch.mjs <path to start-server.js> --headless
//
// * On 127.0.0.1 with a kernel-chosen port, printed as "listening on http://127.0.0.1:PORT": start-server.js only
//   takes --port=N and listens on every interface (@hono/node-server's serve() without a hostname).
// * Streamed upstream answers get mutable headers. @hono/node-server replaces the global Response with a
//   lightweight one that keeps the headers of the Response it is built from; Portkey builds its stream response
//   from the upstream fetch() Response (whose headers are immutable) and then appends its x-portkey-* headers,
//   so on Node 20 every streamed OpenAI-compatible call failed with "TypeError: immutable" (HTTP 500). Only
//   text/event-stream answers are copied; JSON answers reach Portkey exactly as fetch() returns them.
import net from "node:net";
import { pathToFileURL } from "node:url";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const callback = args.find((a) => typeof a === "function");
  this.once("listening", () => console.log(`listening on http://127.0.0.1:${this.address().port}`));
  return listen.call(this, 0, "127.0.0.1", callback);
};

const NativeResponse = globalThis.Response;
const nativeFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const response = await nativeFetch(...args);
  if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) return response;
  const init = { status: response.status, statusText: response.statusText, headers: new Headers(response.headers) };
  return new NativeResponse(response.body, init);
};

await import(pathToFileURL(process.argv[2]).href);
