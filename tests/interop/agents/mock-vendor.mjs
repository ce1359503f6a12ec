// A small mock of the model APIs of Anthropic, OpenAI and Google, so that real ACP agents
// (claude-agent-acp, codex-acp, qwen-code, gemini-cli, opencode) do real turns offline in
// tests/interop/real_agents_test.sh.
//
// It speaks just enough of each wire format for the agents' own clients:
//   Anthropic Messages   POST /v1/messages (SSE when "stream": true), POST /v1/messages/count_tokens
//   OpenAI Responses     POST /v1/responses (SSE); the WebSocket probe of codex gets 426 so that it
//                        falls back to HTTPS at once (a 404 costs seconds of retries)
//   OpenAI Chat          POST /v1/chat/completions (SSE when "stream": true)
//   Gemini               POST /v1beta/models/M:generateContent|streamGenerateContent|countTokens
// The model is a script. By default it answers a short canned text. A trigger word in the latest user
// message makes it call one of the tools the agent declared in the request (found by name, its
// arguments named after the tool's schema):
//   TRIGGER_WRITE <path> <text...>      write <text> to <path>
//   TRIGGER_EDIT <path> <old> <new>     replace the word <old> by <new> in <path>
//   TRIGGER_READ <path>                 read <path>
//   TRIGGER_RUN <command...>            run a shell command
//   TRIGGER_FAIL <status> <message...>  answer HTTP <status> with <message> in the vendor's error shape
//   TRIGGER_MCP <tool> <message...>     call the tool named exactly <tool> (an MCP server's, such as
//                                       mcp__everything__echo) with {message: <message...>}
// An edit is preceded by a read when the agent has a read tool (claude's and qwen's edit tools refuse
// a file not read first). Once the last tool result is back, the answer is a short text quoting its
// start. With no matching tool declared (side requests such as title generation), the canned text
// is the answer. Mind the agents' retries of errors: claude retries even a 401 (unless
// CLAUDE_CODE_MAX_RETRIES=0), codex a 401 (five times) but not a 400.
//
// usage: node mock-vendor.mjs PORT_FILE LOG_FILE
// Listens on 127.0.0.1 with an ephemeral port, writes the port to PORT_FILE (atomically) and logs each
// request as one JSON line to LOG_FILE: {method, path, kind, model, stream, tools, last, answer}.
// No dependencies beyond Node's standard library.

import http from 'node:http';
import fs from 'node:fs';

const [portFile, logFile] = process.argv.slice(2);
if (!portFile || !logFile) {
  process.stderr.write('usage: node mock-vendor.mjs PORT_FILE LOG_FILE\n');
  process.exit(2);
}

const CANNED = 'Mock answer: hello from the mock model.';

function log(entry) {
  fs.appendFileSync(logFile, JSON.stringify({ t: Date.now(), ...entry }) + '\n');
}

// ---- the script: what to answer, given the latest user text or tool result ----

const TRIGGER = /TRIGGER_(WRITE|EDIT|READ|RUN|FAIL|MCP)\b[ \t]*([^\n]*)/g;

// The last trigger in TEXT, as {kind, args}, or null.
function findTrigger(text) {
  let found = null;
  for (const m of text.matchAll(TRIGGER)) found = { kind: m[1], args: m[2].trim() };
  return found;
}

// Tool names per action, in order of preference, for the agents we know.
const TOOL_NAMES = {
  WRITE: ['mcp__acp__Write', 'Write', 'write_file', 'write', 'apply_patch'],
  EDIT: ['mcp__acp__Edit', 'Edit', 'edit', 'replace', 'apply_patch'],
  READ: ['mcp__acp__Read', 'Read', 'read_file', 'read'],
  RUN: ['mcp__acp__Bash', 'Bash', 'run_shell_command', 'shell_command', 'exec_command', 'shell', 'bash'],
};
// Fallback for READ/WRITE/EDIT when only a shell is declared (codex without apply_patch).
const SHELL_NAMES = TOOL_NAMES.RUN;

// tools: [{name, props: Set of argument names, custom: bool}]
function pickTool(kind, tools) {
  for (const n of TOOL_NAMES[kind] ?? []) {
    const t = tools.find((x) => x.name === n);
    if (t) return t;
  }
  return null;
}

function shellQuote(s) {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

// The first name among NAMES that the tool's schema declares, else the first name.
function prop(tool, ...names) {
  return names.find((n) => tool.props.has(n)) ?? names[0];
}

// Arguments for a shell tool running COMMAND.
function shellArgs(tool, command) {
  const key = prop(tool, 'command', 'cmd');
  // codex's `shell` takes an argv array; the others take a string.
  return { [key]: tool.arrays.has(key) ? ['bash', '-lc', command] : command };
}

// {name, input (object, or a string for a custom tool), custom} for the trigger, or null.
function toolCall(trigger, tools) {
  const { kind, args } = trigger;
  const words = args.split(/\s+/);
  if (kind === 'MCP') {
    const t = tools.find((x) => x.name === words[0]);
    return t ? { name: t.name, custom: false, input: { [prop(t, 'message')]: args.slice(words[0].length).trim() } } : null;
  }
  let tool = pickTool(kind, tools);
  if (!tool && kind !== 'RUN' && kind !== 'FAIL') tool = pickTool('RUN', tools);
  if (!tool) return null;
  const shell = SHELL_NAMES.includes(tool.name);
  if (tool.name === 'apply_patch') {
    const path = words[0];
    const body = kind === 'WRITE'
      ? `*** Add File: ${path}\n+${args.slice(path.length).trim()}\n`
      : `*** Update File: ${path}\n@@\n-${words[1]}\n+${words[2]}\n`;
    const patch = `*** Begin Patch\n${body}*** End Patch\n`;
    return { name: tool.name, custom: tool.custom, input: tool.custom ? patch : { [prop(tool, 'input', 'patch')]: patch } };
  }
  let input;
  if (kind === 'RUN') {
    input = shellArgs(tool, args);
  } else if (shell) {
    const path = words[0];
    const text = args.slice(path.length).trim();
    const command = kind === 'WRITE' ? `printf '%s\\n' ${shellQuote(text)} > ${shellQuote(path)}`
      : kind === 'EDIT' ? `sed -i 's/${words[1]}/${words[2]}/' ${shellQuote(path)}`
        : `cat ${shellQuote(path)}`;
    input = shellArgs(tool, command);
  } else {
    const path = words[0];
    const pathKey = prop(tool, 'file_path', 'absolute_path', 'path', 'filePath');
    if (kind === 'WRITE') {
      input = { [pathKey]: path, [prop(tool, 'content', 'contents', 'text')]: args.slice(path.length).trim() + '\n' };
    } else if (kind === 'EDIT') {
      input = { [pathKey]: path, [prop(tool, 'old_string', 'oldString', 'old_str')]: words[1],
        [prop(tool, 'new_string', 'newString', 'new_str')]: words[2] };
    } else {
      input = { [pathKey]: path };
    }
  }
  return { name: tool.name, custom: false, input };
}

// The answer for one model request: {text} | {tool: {name, input, custom}} | {fail: {status, message}}.
// CONV is the conversation as a list of {user: text} and {toolResult: text}, oldest first. The
// trigger is looked for in the latest user text; each tool result after it is one step done. An
// edit with an edit tool takes two steps, read then edit: claude's and qwen's edit tools refuse a
// file that was not read first.
function decide(conv, tools) {
  let u = conv.length - 1;
  while (u >= 0 && conv[u].user === undefined) u--;
  const results = conv.slice(u + 1).map((e) => e.toolResult);
  const trigger = u >= 0 ? findTrigger(conv[u].user) : null;
  if (!trigger) {
    if (results.length === 0) return { text: CANNED };
    return { text: `Mock answer: the tool said: ${results[results.length - 1].replace(/\s+/g, ' ').trim().slice(0, 120)}` };
  }
  if (trigger.kind === 'FAIL') {
    const m = /^(\d{3})\s*(.*)$/.exec(trigger.args);
    return { fail: { status: m ? Number(m[1]) : 500, message: (m ? m[2] : trigger.args) || 'mock failure' } };
  }
  const steps = [trigger];
  if (trigger.kind === 'EDIT' && pickTool('EDIT', tools) && pickTool('READ', tools)) {
    steps.unshift({ kind: 'READ', args: trigger.args.split(/\s+/)[0] });
  }
  if (results.length >= steps.length) {
    const quoted = results[results.length - 1].replace(/\s+/g, ' ').trim().slice(0, 120);
    return { text: `Mock answer: the tool said: ${quoted}` };
  }
  const tool = toolCall(steps[results.length], tools);
  return tool ? { tool } : { text: CANNED };
}

// ---- helpers ----

let seq = 0;
const newId = (p) => `${p}${Date.now().toString(36)}${(++seq).toString(36)}`;

function textOf(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((c) => (typeof c === 'string' ? c : c.text ?? '')).join('\n');
}

function schemaInfo(schema) {
  const p = schema?.properties ?? {};
  return {
    props: new Set(Object.keys(p)),
    arrays: new Set(Object.keys(p).filter((k) => p[k]?.type === 'array')),
  };
}

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function sse(res) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  return {
    event: (name, data) => res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`),
    data: (data) => res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`),
    end: () => res.end(),
  };
}

// Split a text into a few streamed pieces (the agents must join them).
function pieces(text) {
  const words = text.split(/(?<= )/);
  const out = [];
  for (let i = 0; i < words.length; i += 3) out.push(words.slice(i, i + 3).join(''));
  return out;
}

// ---- Anthropic Messages ----

function anthropicParse(body) {
  const tools = (body.tools ?? []).filter((t) => t.name).map((t) => ({ name: t.name, custom: false, ...schemaInfo(t.input_schema) }));
  const conv = [];
  for (const m of body.messages ?? []) {
    if (m.role !== 'user') continue;
    const blocks = Array.isArray(m.content) ? m.content : [];
    const results = blocks.filter((b) => b.type === 'tool_result');
    if (results.length) results.forEach((r) => conv.push({ toolResult: textOf(r.content) }));
    else conv.push({ user: textOf(m.content) });
  }
  return { tools, conv };
}

function anthropicAnswer(res, body, answer) {
  if (answer.fail) {
    const type = answer.fail.status === 401 ? 'authentication_error' : answer.fail.status === 429 ? 'rate_limit_error' : 'api_error';
    return sendJson(res, answer.fail.status, { type: 'error', error: { type, message: answer.fail.message } });
  }
  const model = body.model ?? 'mock-model';
  const usage = { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
  const content = answer.tool
    ? [{ type: 'tool_use', id: newId('toolu_'), name: answer.tool.name, input: answer.tool.input }]
    : [{ type: 'text', text: answer.text }];
  const stop = answer.tool ? 'tool_use' : 'end_turn';
  const message = { id: newId('msg_'), type: 'message', role: 'assistant', model, content, stop_reason: stop, stop_sequence: null, usage };
  if (!body.stream) return sendJson(res, 200, message);
  const s = sse(res);
  s.event('message_start', { type: 'message_start', message: { ...message, content: [], stop_reason: null } });
  const block = content[0];
  if (block.type === 'text') {
    s.event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    for (const p of pieces(block.text)) {
      s.event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } });
    }
  } else {
    s.event('content_block_start', { type: 'content_block_start', index: 0, content_block: { ...block, input: {} } });
    s.event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) } });
  }
  s.event('content_block_stop', { type: 'content_block_stop', index: 0 });
  s.event('message_delta', { type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
  s.event('message_stop', { type: 'message_stop' });
  s.end();
}

// ---- OpenAI Responses (codex) ----

function responsesParse(body) {
  const tools = (body.tools ?? []).filter((t) => t.name).map((t) => ({ name: t.name, custom: t.type === 'custom', ...schemaInfo(t.parameters) }));
  const input = Array.isArray(body.input) ? body.input : [{ type: 'message', role: 'user', content: body.input ?? '' }];
  const conv = [];
  for (const item of input) {
    if (/_call_output$/.test(item.type ?? '')) {
      const out = item.output;
      conv.push({ toolResult: typeof out === 'string' ? out : textOf(out?.content ?? out) });
    } else if (item.role === 'user') {
      conv.push({ user: textOf(item.content) });
    }
  }
  return { tools, conv };
}

function responsesAnswer(res, body, answer) {
  if (answer.fail) {
    const code = answer.fail.status === 401 ? 'invalid_api_key' : 'server_error';
    return sendJson(res, answer.fail.status, { error: { message: answer.fail.message, type: code, code, param: null } });
  }
  const id = newId('resp_');
  const s = sse(res);
  const base = { id, object: 'response', created_at: Math.floor(Date.now() / 1000), model: body.model ?? 'mock-model', status: 'in_progress', output: [] };
  s.event('response.created', { type: 'response.created', response: base });
  let item;
  if (answer.tool) {
    const callId = newId('call_');
    item = answer.tool.custom
      ? { type: 'custom_tool_call', id: newId('ctc_'), call_id: callId, name: answer.tool.name, input: answer.tool.input, status: 'completed' }
      : { type: 'function_call', id: newId('fc_'), call_id: callId, name: answer.tool.name, arguments: JSON.stringify(answer.tool.input), status: 'completed' };
    s.event('response.output_item.added', { type: 'response.output_item.added', output_index: 0, item });
  } else {
    const itemId = newId('msg_');
    item = { type: 'message', id: itemId, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: answer.text, annotations: [] }] };
    s.event('response.output_item.added', { type: 'response.output_item.added', output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
    for (const p of pieces(answer.text)) {
      s.event('response.output_text.delta', { type: 'response.output_text.delta', item_id: itemId, output_index: 0, content_index: 0, delta: p });
    }
  }
  s.event('response.output_item.done', { type: 'response.output_item.done', output_index: 0, item });
  const usage = { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 };
  s.event('response.completed', { type: 'response.completed', response: { ...base, status: 'completed', output: [item], usage } });
  s.end();
}

// ---- OpenAI Chat Completions (qwen, opencode) ----

function chatParse(body) {
  const tools = (body.tools ?? []).map((t) => t.function).filter((f) => f?.name).map((f) => ({ name: f.name, custom: false, ...schemaInfo(f.parameters) }));
  const conv = [];
  for (const m of body.messages ?? []) {
    if (m.role === 'tool') conv.push({ toolResult: textOf(m.content) });
    else if (m.role === 'user') conv.push({ user: textOf(m.content) });
  }
  return { tools, conv };
}

function chatAnswer(res, body, answer) {
  if (answer.fail) {
    const type = answer.fail.status === 401 ? 'invalid_request_error' : 'server_error';
    return sendJson(res, answer.fail.status, { error: { message: answer.fail.message, type, code: answer.fail.status === 401 ? 'invalid_api_key' : null, param: null } });
  }
  const id = newId('chatcmpl-');
  const model = body.model ?? 'mock-model';
  const created = Math.floor(Date.now() / 1000);
  const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
  const toolCalls = answer.tool
    ? [{ index: 0, id: newId('call_'), type: 'function', function: { name: answer.tool.name, arguments: JSON.stringify(answer.tool.input) } }]
    : undefined;
  const finish = answer.tool ? 'tool_calls' : 'stop';
  if (!body.stream) {
    const message = { role: 'assistant', content: answer.tool ? null : answer.text, ...(toolCalls ? { tool_calls: toolCalls.map(({ index, ...c }) => c) } : {}) };
    return sendJson(res, 200, { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, finish_reason: finish }], usage });
  }
  const s = sse(res);
  const chunk = (delta, finishReason = null, extra = {}) =>
    s.data({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finishReason }], ...extra });
  chunk({ role: 'assistant', content: '' });
  if (toolCalls) chunk({ tool_calls: toolCalls });
  else for (const p of pieces(answer.text)) chunk({ content: p });
  chunk({}, finish, { usage });
  s.data('[DONE]');
  s.end();
}

// ---- Gemini (gemini-cli) ----

function geminiParse(body) {
  const decls = (body.tools ?? []).flatMap((t) => t.functionDeclarations ?? []);
  const tools = decls.map((d) => ({ name: d.name, custom: false, ...schemaInfo(d.parameters ?? d.parametersJsonSchema) }));
  const conv = [];
  for (const c of body.contents ?? []) {
    if (c.role !== 'user') continue;
    const parts = c.parts ?? [];
    const frs = parts.filter((p) => p.functionResponse);
    if (frs.length) frs.forEach((p) => conv.push({ toolResult: JSON.stringify(p.functionResponse.response ?? {}) }));
    else if (parts.some((p) => p.text)) conv.push({ user: parts.map((p) => p.text ?? '').join('\n') });
  }
  return { tools, conv };
}

function geminiAnswer(res, body, answer, method) {
  if (answer.fail) {
    const status = answer.fail.status === 401 ? 'UNAUTHENTICATED' : 'INTERNAL';
    return sendJson(res, answer.fail.status, { error: { code: answer.fail.status, message: answer.fail.message, status } });
  }
  const usageMetadata = { promptTokenCount: 10, candidatesTokenCount: 5, totalTokenCount: 15 };
  // A JSON-mode side request (gemini-cli's model router): answer an object matching its schema.
  const schema = body.generationConfig?.responseJsonSchema ?? body.generationConfig?.responseSchema;
  if (method === 'generateContent' && schema) {
    const obj = {};
    for (const [k, v] of Object.entries(schema.properties ?? {})) {
      obj[k] = v.enum ? v.enum[v.enum.length - 1] : v.type === 'boolean' ? false : v.type === 'number' || v.type === 'integer' ? 0 : 'mock';
    }
    return sendJson(res, 200, { candidates: [{ content: { role: 'model', parts: [{ text: JSON.stringify(obj) }] }, finishReason: 'STOP', index: 0 }], usageMetadata });
  }
  const parts = answer.tool ? [{ functionCall: { name: answer.tool.name, args: answer.tool.input } }] : [{ text: answer.text }];
  const whole = { candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }], usageMetadata };
  if (method !== 'streamGenerateContent') return sendJson(res, 200, whole);
  const s = sse(res);
  if (answer.tool) {
    s.data(whole);
  } else {
    const ps = pieces(answer.text);
    ps.forEach((p, i) => s.data({ candidates: [{ content: { role: 'model', parts: [{ text: p }] }, ...(i === ps.length - 1 ? { finishReason: 'STOP' } : {}), index: 0 }], ...(i === ps.length - 1 ? { usageMetadata } : {}) }));
  }
  s.end();
}

// ---- the server ----

function summary(entry, parsed, answer) {
  const end = parsed.conv[parsed.conv.length - 1] ?? { user: '' };
  const last = end.toolResult !== undefined ? { toolResult: end.toolResult.slice(0, 200) } : { user: end.user.slice(-200) };
  const ans = answer.fail ? { fail: answer.fail } : answer.tool ? { tool: answer.tool.name, input: answer.tool.input } : { text: answer.text };
  return { ...entry, tools: parsed.tools.map((t) => t.name), last, answer: ans };
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks).toString('utf8');
    let body = {};
    try {
      body = raw ? JSON.parse(raw) : {};
    } catch {
      body = {};
    }
    const url = new URL(req.url, 'http://mock');
    const path = url.pathname;
    const entry = { method: req.method, path, model: body.model, stream: body.stream };
    try {
      if (req.method === 'POST' && path.endsWith('/messages/count_tokens')) {
        log({ ...entry, kind: 'anthropic-count' });
        return sendJson(res, 200, { input_tokens: 42 });
      }
      if (req.method === 'POST' && path.endsWith('/messages')) {
        const parsed = anthropicParse(body);
        const answer = decide(parsed.conv, parsed.tools);
        log(summary({ ...entry, kind: 'anthropic' }, parsed, answer));
        return anthropicAnswer(res, body, answer);
      }
      if (req.method === 'POST' && path.endsWith('/responses')) {
        const parsed = responsesParse(body);
        const answer = decide(parsed.conv, parsed.tools);
        log(summary({ ...entry, kind: 'responses', stream: body.stream }, parsed, answer));
        return responsesAnswer(res, body, answer);
      }
      if (req.method === 'POST' && path.endsWith('/chat/completions')) {
        const parsed = chatParse(body);
        const answer = decide(parsed.conv, parsed.tools);
        log(summary({ ...entry, kind: 'chat' }, parsed, answer));
        return chatAnswer(res, body, answer);
      }
      const g = /\/models\/([^/:]+):(generateContent|streamGenerateContent|countTokens)$/.exec(path);
      if (req.method === 'POST' && g) {
        if (g[2] === 'countTokens') {
          log({ ...entry, kind: 'gemini-count' });
          return sendJson(res, 200, { totalTokens: 42 });
        }
        const parsed = geminiParse(body);
        const answer = decide(parsed.conv, parsed.tools);
        log(summary({ ...entry, model: g[1], kind: `gemini-${g[2]}` }, parsed, answer));
        return geminiAnswer(res, body, answer, g[2]);
      }
      if (req.method === 'GET' && path.endsWith('/models')) {
        log({ ...entry, kind: 'models' });
        return sendJson(res, 200, { object: 'list', data: [], models: [] });
      }
      log({ ...entry, kind: 'unknown', body: raw.slice(0, 300) });
      sendJson(res, 404, { error: { message: `mock-vendor: no route for ${req.method} ${path}` } });
    } catch (e) {
      log({ ...entry, kind: 'crash', error: String(e?.stack ?? e) });
      if (!res.headersSent) sendJson(res, 500, { error: { message: `mock-vendor crashed: ${e}` } });
      else res.end();
    }
  });
});

// A WebSocket upgrade (codex's Responses-over-WebSocket probe): 426, so the client uses HTTPS at once.
server.on('upgrade', (req, socket) => {
  log({ method: req.method, path: new URL(req.url, 'http://mock').pathname, kind: 'websocket-probe' });
  socket.end('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  fs.writeFileSync(`${portFile}.tmp`, `${port}\n`);
  fs.renameSync(`${portFile}.tmp`, portFile);
  process.stdout.write(`mock-vendor listening on 127.0.0.1:${port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
