// The built-in demo agent (`tether demo-agent`): a small, deterministic ACP v1 agent on stdin and
// stdout, the default bridge when none is given. It echoes and summarises each prompt, streamed in
// several chunks, with a thought, a plan, a tool call and usage; asks for permission when the
// prompt asks for an edit ("edit" or "write"); advertises loadSession and replays a session's
// history on session/load (the history lives in a small file per session, so it survives a crash
// of the agent; files of sessions whose tether has exited are removed).
//
// Trigger words in a prompt change what it does (documented in docs-prompt.md); they are removed
// from the echoed text:
//   /chunks N    answer in exactly N chunks, with no thought, plan, tool call or usage
//   /flood N     stream N one-word chunks ("w ") as fast as possible (benchmarks)
//   /big BYTES   answer with one chunk of BYTES bytes
//   /sleep MS    wait MS milliseconds before answering (a session/cancel ends the wait)
//   /crash       die by SIGSEGV after the first chunk
//   /hang        send one chunk, then never answer anything again (until stdin closes)
//   /exit CODE   exit at once with status CODE
//   /stop REASON answer with that stopReason (end_turn, max_tokens, refusal, ...)
//   /error       answer the prompt with a JSON-RPC error
//   /read PATH   read PATH through the client (fs/read_text_file) and quote it
//   /write PATH  after permission, write the echo to PATH through the client (fs/write_text_file)
//
// It writes through one large buffer, flushed before it waits for input, so a flood costs few
// system calls.
#pragma once

namespace tether::acp {

// Serves ACP on `in_fd` and `out_fd` until `in_fd` reaches end of file. Returns the exit status.
// With `images` false it says it takes no images (promptCapabilities.image), like many agents:
// `tether demo-agent --no-images`, to see what a client does with one.
int run_demo_agent(int in_fd, int out_fd, bool images = true);

}  // namespace tether::acp
