// What the tests' TypeScript x402 clients share: a fetch that records every exchange without changing it, and the
// loop that makes each configured call through @x402/fetch's wrapFetchWithPayment.
import { decodePaymentResponseHeader, wrapFetchWithPayment } from "@x402/fetch";

export function recordingFetch(exchanges) {
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

// Each call ({url, method?, body?}) through the paying client: {status, json, text?, exchanges} or {error, exchanges}.
export async function payCalls(client, calls) {
  const results = [];
  for (const call of calls) {
    const exchanges = [];
    const pay = wrapFetchWithPayment(recordingFetch(exchanges), client);
    try {
      const init = { method: call.method ?? "GET", headers: { "Content-Type": "application/json" } };
      if (call.body !== undefined) init.body = JSON.stringify(call.body);
      const response = await pay(call.url, init);
      const text = await response.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON */ }
      results.push({ status: response.status, json, text: json === null ? text : undefined, exchanges });
    } catch (err) {
      results.push({ error: { name: err?.name, message: String(err?.message ?? err) }, exchanges });
    }
  }
  return results;
}
