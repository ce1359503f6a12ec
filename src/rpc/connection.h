// One JSON-RPC connection to one bridge process (one generation), served by one dispatcher thread
// that owns every fd of that process: it reads stdout through the line framer, drains stderr into
// a 4 KiB ring, writes stdin from an outbound queue, and watches the exit fd (a pidfd). This layer
// never forks, execs or reaps: the supervisor hands it the fds and decides what a death means.
//
// The peer may also be a stream socket (a `tether serve` server): stdin_w and stdout_r are then
// two fds of the same socket, there is no stderr and no exit fd, and the end of stdout is the end
// of the peer (death() is set and wait_exited() returns). Writes to a socket never raise SIGPIPE.
//
// Thread contract: thread-safe. Any thread may call, notify, respond and query. The dispatcher
// thread owns the fds: it alone reads them, waits on them and closes them. The one exception is
// the write-through: a caller whose line has nothing queued before it writes it to stdin itself,
// in one non-blocking write, and queues for the dispatcher whatever did not go out (see
// State::enqueue in connection.cpp). No call blocks the dispatcher, and no write can block anyone.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/pollable_queue.h"
#include "base/unique_fd.h"
#include "rpc/message.h"
#include "rpc/pending_table.h"

namespace tether::rpc {

class Trace;

// What a bridge sent that is not an answer to a blocking call, in wire order: its requests and
// notifications, the responses to call_queued(), and status events written by the supervisor.
inline constexpr std::size_t kMaxOutputText = 300;
inline constexpr int kOutputBurst = 20;

struct Event {
  // output: a line on the bridge's stdout that is not JSON (agents print sign-in URLs there):
  // message is {"text": the line, cut at kMaxOutputText bytes}. At most kOutputBurst of them per
  // generation, then one per second; the rest are only counted (Counters::invalid_json).
  enum class Kind { notification, request, response, status, output };
  Kind kind = Kind::notification;
  std::uint64_t generation = 0;
  json message;               // notification, request: the whole message; status: the payload
  std::int64_t call_id = 0;   // response: the id call_queued() returned
  Reply reply;                // response
  // notification, request: the line as the bridge wrote it, when the dispatcher only checked and
  // classified it (the hot path: parsing is the consumer's work, on the consumer's thread, and its
  // memory is the consumer's). EventQueue::drain() and pop() parse it into `message`;
  // drain_unparsed() leaves that to a consumer that reads some lines without a json value.
  std::string line;
};

// The bridge's events for one consumer (see Event). A PollableQueue whose drain() and pop() hand
// out events with their message parsed.
class EventQueue : private base::PollableQueue<Event> {
  using Base = base::PollableQueue<Event>;

 public:
  using Base::Base;
  using Base::capacity;
  using Base::clear_space;
  using Base::fd;
  using Base::has_room;
  using Base::room;
  using Base::high_water;
  using Base::push;
  using Base::push_all;
  using Base::size;
  using Base::space_fd;

  std::vector<Event> drain();
  std::optional<Event> pop(base::Deadline deadline = base::Deadline::never());
  // Like drain(), with `line` left unparsed: the consumer calls parse_message() where it needs it.
  std::vector<Event> drain_unparsed() { return Base::drain(); }
  // The same, but nothing at all (fd() untouched) when nothing waits (PollableQueue::drain_if_any).
  std::vector<Event> drain_unparsed_if_any() { return Base::drain_if_any(); }
  // Events the consumer is done with, to be freed by the dispatcher (PollableQueue::recycle); a
  // large line is freed here at once instead of being held until the bridge's next line.
  void recycle(std::vector<Event>&& done);
};

// Parses an event's `line` into its `message` (once; nothing when there is no line).
void parse_message(Event& ev);

// Why the connection can no longer carry messages; the first one noticed wins.
enum class DeathCause { none, exited, stdout_eof, stdin_closed };

struct Counters {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t invalid_json = 0;       // lines that are not JSON (or not UTF-8)
  std::uint64_t not_jsonrpc = 0;        // JSON that is not a JSON-RPC message
  std::uint64_t oversize_lines = 0;     // lines over max_line, drained and dropped
  std::uint64_t unknown_responses = 0;  // responses to ids we are not waiting for
  std::uint64_t stderr_bytes = 0;
  // Times the dispatcher stopped reading stdout because the bridge does not read its stdin: more
  // than kOutboundLimit bytes were waiting for it (see connection.cpp).
  std::uint64_t outbound_stalls = 0;
  std::uint64_t outbound_backlog = 0;   // bytes waiting to be written to the bridge's stdin
};

// Past this many bytes waiting to be written to a bridge, its stdout is not read until they drain:
// every line read may be a request whose answer would wait behind them.
inline constexpr std::size_t kOutboundLimit = std::size_t{4} << 20;

struct ConnectionFds {
  // exit_fd: readable once the process exited. stderr_r and exit_fd may be invalid (a socket).
  base::UniqueFd stdin_w, stdout_r, stderr_r, exit_fd;
};

struct ConnectionOptions {
  std::uint64_t generation = 1;
  std::size_t max_line = std::size_t{64} << 20;
  std::shared_ptr<EventQueue> events;   // required
  std::shared_ptr<Trace> trace;         // optional
  int stderr_copy_fd = -1;              // also copy stderr bytes here (--bridge-stderr pass|FILE)
  std::string thread_name = "tether-disp";
  // Optional: recognizes the consumer's most common line, byte for byte (acp::is_common_chunk_line,
  // a text chunk of a streamed answer). A line it accepts goes on as a notification without the
  // scan that checks it (pass_line). It must accept only a single JSON object that is a
  // notification: "jsonrpc":"2.0", a string method, object params, no id.
  bool (*plain_notification)(std::string_view line) = nullptr;
  // Runs on the dispatcher thread, with no lock of the connection's state held, each time death()
  // changes or the exit is seen (wait_exited() returns), until detach_on_change() returns.
  std::function<void()> on_change;
};

class Connection {
 public:
  Connection(ConnectionFds fds, ConnectionOptions options);
  ~Connection();  // stops and joins the dispatcher; closes the fds
  // Starts the dispatcher thread. Messages sent before are queued and go out once it runs.
  void start();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends a request and waits for its reply until `deadline` (then Status::timeout; a late
  // response is counted as unknown and dropped). Never call it on the thread that drains the
  // event queue: a reply queued behind more than a queue's worth of notifications would never
  // arrive (use call_queued there). Its one caller is Bridge::call(), which only tests use.
  Reply call(std::string_view method, json params, base::Deadline deadline);
  // Sends a request; `done` runs exactly once, on the dispatcher thread or (when the connection is
  // already dead) on the caller's. It must not block.
  std::int64_t call_async(std::string_view method, json params, Completion done);
  // Sends a request whose reply arrives as an Event::response in the event queue, in wire order
  // with the notifications before it (a prompt's final response never overtakes its updates).
  std::int64_t call_queued(std::string_view method, json params);
  std::int64_t call_queued_raw(std::string_view method, const RawParams& params);  // params written already
  // Ends a waiting request with Status::cancelled; false if it already completed.
  bool cancel(std::int64_t id);
  void notify(std::string_view method, json params);
  void respond(const json& id, json result);
  void respond_error(const json& id, int code, std::string_view message, json data = nullptr);

  // Asks the dispatcher to close the bridge's stdin (its cue to exit); on a socket, to shut down
  // our sending side (the peer reads the end of its input).
  void close_stdin();
  // Waits until the process exit (or, without an exit fd, the end of stdout) was seen and its last
  // output drained; true if so.
  bool wait_exited(base::Deadline deadline);
  DeathCause death() const;
  // Fails every waiting request with `reply` and every later one at once (the death path).
  void fail_pending(const Reply& reply);
  // After this returns, on_change never runs again (for an owner that is going away while another
  // thread may still hold the connection). Must not be called from inside on_change.
  void detach_on_change();

  std::string stderr_tail() const;       // the last 4 KiB
  Counters counters() const;
  base::TimePoint last_received() const;  // when stdout last produced bytes
  // True while the dispatcher has stopped reading stdout because the event queue is full (the
  // bridge's silence is then ours, not its own).
  bool backpressured() const;
  std::uint64_t generation() const;

 private:
  std::int64_t send_call(std::string_view method, const RawParams& params, Completion done);

  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace tether::rpc
