// Reference check of agent.mjs with the SDK's own client (no tether involved): runs every
// behaviour the interop test relies on and exits non-zero on the first surprise.
// usage: node smoke-client.mjs   (TETHER_INTEROP_LOG may name the agent's log file)
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import * as acp from "@agentclientprotocol/sdk";

const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "acp-smoke-"));
const logFile = process.env.TETHER_INTEROP_LOG ?? join(dir, "agent.log");
const child = spawn(process.execPath, [join(here, "agent.mjs")], {
  stdio: ["pipe", "pipe", "inherit"],
  env: { ...process.env, TETHER_INTEROP_LOG: logFile },
});
const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));

let permissionAnswer = "allow"; // "allow", "reject" or "cancelled"
const texts = new Map();
let onUpdate = () => {};
const client = acp
  .client({ name: "smoke-client" })
  .onNotification(acp.methods.client.session.update, ({ params }) => {
    const u = params.update;
    if (u.sessionUpdate === "agent_message_chunk" && u.content.type === "text") {
      texts.set(params.sessionId, (texts.get(params.sessionId) ?? "") + u.content.text);
      onUpdate(texts.get(params.sessionId));
    }
  })
  .onRequest(acp.methods.client.session.requestPermission, () =>
    permissionAnswer === "cancelled"
      ? { outcome: { outcome: "cancelled" } }
      : { outcome: { outcome: "selected", optionId: permissionAnswer } },
  )
  .onRequest(acp.methods.client.fs.readTextFile, ({ params }) => ({ content: readFileSync(params.path, "utf8") }));

function expect(cond, what, got) {
  if (!cond) throw new Error(`${what}: got ${JSON.stringify(got)}`);
  console.log(`ok: ${what}`);
}

const file = join(dir, "note.txt");
writeFileSync(file, "interop-file-content-42");
try {
  await client.connectWith(stream, async (agent) => {
    const init = await agent.request(acp.methods.agent.initialize, {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities: { fs: { readTextFile: true } },
      clientInfo: { name: "smoke-client", version: "0" },
    });
    expect(init.protocolVersion === 1, "initialize", init);
    const turn = async (prompt) => {
      const { sessionId } = await agent.request(acp.methods.agent.session.new, { cwd: dir, mcpServers: [] });
      const res = await agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: prompt }] });
      return { ...res, sessionId, text: texts.get(sessionId) };
    };
    let r = await turn("hello");
    expect(r.stopReason === "end_turn" && r.text === "Streaming reply: 1 2 3 4 5 6 7 8 9 10.", "streaming", r);
    r = await turn("ask permission please");
    expect(r.text.endsWith("permission: allowed."), "permission allowed", r);
    permissionAnswer = "reject";
    r = await turn("ask permission please");
    expect(r.text.endsWith("permission: rejected."), "permission rejected", r);
    r = await turn(`read ${file}`);
    expect(r.text.endsWith(" file content: interop-file-content-42"), "fs/read_text_file", r);
    // Cancel mid-stream: session/cancel once a few slow chunks have arrived.
    const { sessionId } = await agent.request(acp.methods.agent.session.new, { cwd: dir, mcpServers: [] });
    onUpdate = (t) => {
      if (t.includes("slow-3")) {
        onUpdate = () => {};
        void agent.notify(acp.methods.agent.session.cancel, { sessionId });
      }
    };
    const started = Date.now();
    const res = await agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "slow" }] });
    expect(res.stopReason === "cancelled" && Date.now() - started < 5000, "cancel", res);
  });
  const events = readFileSync(logFile, "utf8").trim().split("\n").map((l) => JSON.parse(l).event);
  expect(events.includes("cancel"), "agent logged the cancel", events);
} finally {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.stdin.end();
  if (child.exitCode === null && child.signalCode === null) await exited;
  rmSync(dir, { recursive: true, force: true });
}
