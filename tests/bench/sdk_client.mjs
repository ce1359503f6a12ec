// The official ACP SDK's client (@agentclientprotocol/sdk, pinned in tests/interop/acp) driving the
// same fast agent as tether in scripts/bench (tests/bench/fast_agent.cpp): the figures tether is
// compared with. scripts/bench copies this file next to an `npm ci` of that lockfile.
//
// usage: node sdk_client.mjs AGENT turns N   N prompts on one session, one after the other
//        node sdk_client.mjs AGENT flood N   one prompt streaming N chunks
// Prints one line of key=value figures:
//   turns: turn_us=MEAN (per prompt, after 200 warm-up turns)
//   flood: notifications=N seconds=S per_s=R rss_kib=PEAK (this process's peak RSS)
// Exits 1 when the agent's answers are not what the benchmark expects.
import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const [agentPath, mode, countText] = process.argv.slice(2);
const count = Number(countText);
if (!agentPath || !["turns", "flood"].includes(mode) || !(count > 0)) {
  console.error("usage: node sdk_client.mjs AGENT turns|flood N");
  process.exit(64);
}

const child = spawn(agentPath, [], { stdio: ["pipe", "pipe", "inherit"] });
const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));
let chunks = 0;
const client = acp.client({ name: "bench-sdk-client" }).onNotification(acp.methods.client.session.update, ({ params }) => {
  if (params.update.sessionUpdate === "agent_message_chunk") ++chunks;
});

function check(cond, what) {
  if (!cond) {
    console.error(`sdk_client: ${what}`);
    process.exit(1);
  }
}

await client.connectWith(stream, async (agent) => {
  await agent.request(acp.methods.agent.initialize, { protocolVersion: acp.PROTOCOL_VERSION, clientCapabilities: {} });
  const { sessionId } = await agent.request(acp.methods.agent.session.new, { cwd: process.cwd(), mcpServers: [] });
  const prompt = (text) => agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text }] });
  if (mode === "turns") {
    for (let i = 0; i < 200; ++i) await prompt("hi");
    chunks = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; ++i) check((await prompt("hi")).stopReason === "end_turn", "a turn did not end");
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / count;
    check(chunks === count, `${chunks} chunks for ${count} turns`);
    console.log(`turn_us=${us.toFixed(3)}`);
  } else {
    const t0 = process.hrtime.bigint();
    const r = await prompt(`flood ${count}`);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    check(r.stopReason === "end_turn" && chunks === count, `${chunks} of ${count} chunks`);
    console.log(`notifications=${count} seconds=${s.toFixed(4)} per_s=${Math.round(count / s)} rss_kib=${process.resourceUsage().maxRSS}`);
  }
});
child.stdin.end();
