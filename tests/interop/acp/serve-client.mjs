// The official SDK's client attached to `tether serve` through its Unix socket (the server runs
// agent.mjs, itself built on the SDK): any ACP client can use the server, not only tether's own.
// usage: node serve-client.mjs SOCKET CWD   (exits non-zero on the first surprise)
import net from "node:net";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const [socketPath, cwd] = process.argv.slice(2);
const conn = net.createConnection(socketPath);
await new Promise((resolve, reject) => {
  conn.once("connect", resolve);
  conn.once("error", reject);
});
const stream = acp.ndJsonStream(Writable.toWeb(conn), Readable.toWeb(conn));

const texts = new Map();
const extensions = [];
let asked = 0;
const client = acp
  .client({ name: "serve-client" })
  .onNotification(acp.methods.client.session.update, ({ params }) => {
    const u = params.update;
    if (u.sessionUpdate === "agent_message_chunk" && u.content.type === "text")
      texts.set(params.sessionId, (texts.get(params.sessionId) ?? "") + u.content.text);
  })
  .onRequest(acp.methods.client.session.requestPermission, () => {
    asked += 1;
    return { outcome: { outcome: "selected", optionId: "allow" } };
  });

function expect(cond, what, got) {
  if (!cond) throw new Error(`${what}: got ${JSON.stringify(got)}`);
  console.log(`ok: ${what}`);
}

try {
  await client.connectWith(stream, async (agent) => {
    const init = await agent.request(acp.methods.agent.initialize, {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities: {},
      clientInfo: { name: "serve-client", version: "0" },
    });
    const main = init._meta?.tether?.mainSessionId;
    expect(init.protocolVersion === 1 && typeof main === "string" && main.length > 0,
      "initialize answered by the server, naming its main session", init);
    // A session of our own.
    const { sessionId } = await agent.request(acp.methods.agent.session.new, { cwd, mcpServers: [] });
    let r = await agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "hello" }] });
    expect(r.stopReason === "end_turn" && texts.get(sessionId) === "Streaming reply: 1 2 3 4 5 6 7 8 9 10.",
      "a streamed turn in a session of our own", { r, text: texts.get(sessionId) });
    // The server's main session: attached with session/load, and we are its active client.
    await agent.request(acp.methods.agent.session.load, { sessionId: main, cwd, mcpServers: [] });
    r = await agent.request(acp.methods.agent.session.prompt, { sessionId: main, prompt: [{ type: "text", text: "ask permission please" }] });
    expect(r.stopReason === "end_turn" && asked === 1 && (texts.get(main) ?? "").endsWith("permission: allowed."),
      "the main session's permission request came to us", { r, asked, text: texts.get(main) });
  });
} finally {
  conn.destroy();
}
