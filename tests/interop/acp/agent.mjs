// A small ACP agent built on the official SDK (@agentclientprotocol/sdk 2.x, stable ACP v1 API):
// the interop peer of acp_prompt_test.sh. Every prompt streams its reply in several
// agent_message_chunk updates. Words in the prompt turn on behaviours:
//   "permission"  asks session/request_permission (allow_once "allow", reject_once "reject") and
//                 says "permission: allowed|rejected|cancelled"
//   "read PATH"   reads PATH with fs/read_text_file (only when the client advertised it) and
//                 includes "file content: <content>" (or "fs error: <code>" when refused)
//   "slow"        streams one chunk every 100 ms for up to 30 s and honours session/cancel
// When TETHER_INTEROP_LOG names a file, events are appended to it, one JSON object a line.
import { appendFileSync } from "node:fs";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const logFile = process.env.TETHER_INTEROP_LOG;
const log = (event, data = {}) => {
  if (!logFile) return;
  try {
    appendFileSync(logFile, JSON.stringify({ pid: process.pid, event, ...data }) + "\n");
  } catch {
    // the test may already have removed its temp dir
  }
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let clientCapabilities = {};
let nextSession = 1;
const turns = new Map(); // sessionId -> AbortController of the turn in flight

async function say(client, sessionId, text) {
  await client.notify(acp.methods.client.session.update, {
    sessionId,
    update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text } },
  });
}

async function askPermission(client, sessionId) {
  const toolCallId = "call-1";
  await client.notify(acp.methods.client.session.update, {
    sessionId,
    update: { sessionUpdate: "tool_call", toolCallId, title: "Touch the test file", kind: "edit", status: "pending" },
  });
  const { outcome } = await client.request(acp.methods.client.session.requestPermission, {
    sessionId,
    toolCall: { toolCallId, title: "Touch the test file", kind: "edit", status: "pending" },
    options: [
      { optionId: "allow", name: "Allow", kind: "allow_once" },
      { optionId: "reject", name: "Reject", kind: "reject_once" },
    ],
  });
  const word = outcome.outcome === "cancelled" ? "cancelled" : outcome.optionId === "allow" ? "allowed" : "rejected";
  log("permission", { outcome });
  await client.notify(acp.methods.client.session.update, {
    sessionId,
    update: { sessionUpdate: "tool_call_update", toolCallId, status: word === "allowed" ? "completed" : "failed" },
  });
  return word;
}

const app = acp
  .agent({ name: "tether-interop-agent" })
  .onRequest(acp.methods.agent.initialize, ({ params }) => {
    clientCapabilities = params.clientCapabilities ?? {};
    log("initialize", { protocolVersion: params.protocolVersion, clientCapabilities });
    return {
      protocolVersion: acp.PROTOCOL_VERSION,
      agentCapabilities: {},
      agentInfo: { name: "tether-interop-agent", version: "1.0.0" },
      authMethods: [],
    };
  })
  .onRequest(acp.methods.agent.session.new, ({ params }) => {
    const sessionId = `interop-session-${nextSession++}`;
    log("session/new", { sessionId, cwd: params.cwd });
    return { sessionId };
  })
  .onRequest(acp.methods.agent.session.prompt, async ({ params, client }) => {
    const { sessionId } = params;
    const text = params.prompt.filter((b) => b.type === "text").map((b) => b.text).join(" ");
    log("prompt", { sessionId, text });
    turns.get(sessionId)?.abort();
    const turn = new AbortController();
    turns.set(sessionId, turn);
    try {
      await say(client, sessionId, "Streaming reply:");
      for (let i = 1; i <= 10; i++) await say(client, sessionId, ` ${i}`);
      await say(client, sessionId, ".");
      if (/\bpermission\b/.test(text)) await say(client, sessionId, `permission: ${await askPermission(client, sessionId)}.`); // a new message after the tool call
      const read = /\bread (\S+)/.exec(text);
      if (read) {
        if (clientCapabilities.fs?.readTextFile) {
          try {
            const { content } = await client.request(acp.methods.client.fs.readTextFile, { sessionId, path: read[1] });
            log("read", { path: read[1], content });
            await say(client, sessionId, ` file content: ${content}`);
          } catch (e) {
            log("read-error", { path: read[1], code: e.code, message: e.message });
            await say(client, sessionId, ` fs error: ${e.code ?? e.message}.`);
          }
        } else {
          await say(client, sessionId, " fs: not advertised.");
        }
      }
      if (/\bslow\b/.test(text)) {
        for (let i = 1; i <= 300 && !turn.signal.aborted; i++) {
          await say(client, sessionId, ` slow-${i}`);
          if (i === 3) log("slow-streaming", { sessionId });
          await sleep(100);
        }
      }
      const stopReason = turn.signal.aborted ? "cancelled" : "end_turn";
      log("turn-end", { sessionId, stopReason });
      return { stopReason };
    } finally {
      if (turns.get(sessionId) === turn) turns.delete(sessionId);
    }
  })
  .onNotification(acp.methods.agent.session.cancel, ({ params }) => {
    log("cancel", { sessionId: params.sessionId, inTurn: turns.has(params.sessionId) });
    turns.get(params.sessionId)?.abort();
  });

log("start");
const connection = app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
connection.closed.then(() => {
  log("closed");
  process.exit(0);
});
