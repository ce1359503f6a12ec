#include "rpc/connection.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "base/byte_ring.h"
#include "base/event_fd.h"
#include "base/mutex.h"
#include "rpc/inbound.h"
#include "rpc/json_read.h"
#include "rpc/line_framer.h"
#include "rpc/raw_ids.h"
#include "rpc/trace.h"
#include "rpc/wait_set.h"

namespace tether::rpc {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
// Per wake-up, how much stderr we read before looking at the other fds again.
constexpr std::size_t kStderrBurst = 256 * 1024;
// After the process exited: how long we keep reading what it (or a grandchild) left in the pipes.
constexpr auto kExitDrain = std::chrono::milliseconds(100);

bool is_socket(int fd) {
  struct stat st;
  return fd >= 0 && ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

struct Connection::State {
  ConnectionFds fds;
  ConnectionOptions opt;
  // stdin_w is a socket: written with send(0), closed by shutdown(SHUT_WR) (the fd is
  // a dup of stdout_r's, so closing it alone would not tell the peer anything).
  const bool stdin_socket;
  // No exit fd (a socket peer): the end of stdout is the end of the peer.
  const bool eof_is_exit;
  PendingTable pending;
  base::EventFd wake;

  // Outbound lines. A caller writes its line itself when nothing is waiting to go before it (the
  // write-through, see enqueue()); everything else is queued here for the dispatcher.
  base::Mutex out_mu;
  std::deque<std::string> outbound GUARDED_BY(out_mu);
  // The end of a line a caller wrote in part (the pipe filled): the dispatcher writes it first.
  std::string direct_rest GUARDED_BY(out_mu);
  // A caller may take the write-through: the dispatcher runs and holds no byte for the bridge
  // (its out_buf is empty, nothing is queued, no line was cut), no other caller is writing, and
  // stdin is open with no close or stop asked.
  bool direct_ok GUARDED_BY(out_mu) = false;
  // A caller is writing through, without out_mu: until it is done, the dispatcher neither writes
  // nor closes stdin_w (the writer wakes it when it left it something to do).
  bool writer_busy GUARDED_BY(out_mu) = false;
  bool dispatcher_running GUARDED_BY(out_mu) = false;  // run()'s loop, until it ends
  bool close_stdin_requested GUARDED_BY(out_mu) = false;
  bool stop_requested GUARDED_BY(out_mu) = false;
  // Callers may write through at all: stdin_w never blocks (O_NONBLOCK; a test's plain pipe may),
  // and there is no --trace (whose file must show each request before its answer: the
  // dispatcher traces an answer as it reads it, and a caller could lose the CPU between its
  // write and its trace line).
  const bool write_through;
  std::atomic<std::uint64_t> direct_out{0};  // lines callers wrote whole or in part

  mutable base::Mutex mu;
  std::condition_variable cv;
  DeathCause death GUARDED_BY(mu) = DeathCause::none;
  bool exited GUARDED_BY(mu) = false;
  base::ByteRing ring GUARDED_BY(mu){4096};
  Counters counters GUARDED_BY(mu);

  // Held while on_change runs, so that detach_on_change() waits for a call in progress.
  std::mutex cb_mu;

  RawIds raw_ids;  // the bridge's float request ids, as written

  std::atomic<base::TimePoint::rep> last_rx{base::Clock::now().time_since_epoch().count()};
  // True while the dispatcher has stopped reading stdout because the event queue is full.
  std::atomic<bool> backpressured{false};

  // Dispatcher-thread-only state.
  WaitSet waits;
  LineFramer framer;
  std::string out_buf;          // bytes taken from `outbound`, not yet written
  std::deque<std::string> outbound_taken;  // take_outbound()'s, kept: a deque allocates when made
  std::size_t out_off = 0;
  bool stdout_open = true;
  bool stderr_open = true;
  std::vector<Event> batch;       // process_lines(): the events of this pass, pushed together
  int outputs_passed = 0;         // Event::Kind::output pushed (pass_output)
  base::TimePoint last_output{};
  std::uint64_t local_in = 0, local_out = 0, local_invalid = 0, local_notrpc = 0, local_unknown = 0,
                local_stderr = 0, local_stalls = 0;
  bool outbound_stalled = false;
  std::uint64_t published_oversize = 0;

  std::thread thread;

  State(ConnectionFds f, ConnectionOptions o)
      : fds(std::move(f)),
        opt(std::move(o)),
        stdin_socket(is_socket(fds.stdin_w.get())),
        eof_is_exit(!fds.exit_fd.valid()),
        write_through(!opt.trace && fds.stdin_w && (::fcntl(fds.stdin_w.get(), F_GETFL) & O_NONBLOCK) != 0),
        framer(opt.max_line) {
    stderr_open = fds.stderr_r.valid();
  }

  // The write-through: when nothing waits to go before it, the caller writes its line itself, at
  // once, with one non-blocking write, and the dispatcher is not woken (a turn costs one context
  // switch less: caller -> bridge -> dispatcher -> caller, not caller -> dispatcher -> bridge ->
  // dispatcher -> caller). The dispatcher still owns every read of the bridge's fds, every wait on
  // them and every close: what does not go out at once (a full pipe: EAGAIN or a part written;
  // EPIPE; any other error) is queued, and the dispatcher writes it when stdin is writable and
  // decides what an error means, as before. The caller holds a token while it writes
  // (writer_busy), not out_mu: a write that wakes the bridge may lose the CPU to it, and a mutex
  // held meanwhile would stall the dispatcher when the answer comes (a lock convoy, measured: one
  // futex wake-up per turn). The write cannot block.
  void enqueue(std::string line) {
    {
      base::MutexLock lock(out_mu);
      if (!direct_ok) {
        bool was_empty = outbound.empty();
        outbound.push_back(std::move(line));
        lock.unlock();
        if (was_empty) wake.notify();
        return;
      }
      direct_ok = false;
      writer_busy = true;
    }
    line.push_back('\n');
    ssize_t n;
    do {
      n = stdin_socket ? ::send(fds.stdin_w.get(), line.data(), line.size(), MSG_NOSIGNAL)
                       : ::write(fds.stdin_w.get(), line.data(), line.size());
    } while (n < 0 && errno == EINTR);
    const std::size_t written = n > 0 ? static_cast<std::size_t>(n) : 0;
    if (written > 0) direct_out.fetch_add(1, std::memory_order_relaxed);
    bool wake_dispatcher = true;
    {
      base::MutexLock lock(out_mu);
      writer_busy = false;
      if (written == line.size()) {
        // Whoever queued meanwhile found no write-through, and the dispatcher, woken by them,
        // left their lines alone while this write went on: it is woken again for them.
        direct_ok = dispatcher_running && outbound.empty() && !close_stdin_requested && !stop_requested;
        wake_dispatcher = !outbound.empty() || close_stdin_requested;
      } else if (written > 0) {
        direct_rest.assign(line, written);  // the dispatcher writes the rest first
      } else {
        line.pop_back();
        outbound.push_front(std::move(line));  // it came before whatever was queued meanwhile
      }
    }
    if (wake_dispatcher) wake.notify();
  }

  // The dispatcher's side of the write-through: callers may write once it holds nothing more.
  void allow_write_through() {
    base::MutexLock lock(out_mu);
    direct_ok = dispatcher_running && write_through && fds.stdin_w && !writer_busy && out_buf.empty() &&
                outbound.empty() && direct_rest.empty() && !close_stdin_requested && !stop_requested;
  }

  // The answer to the bridge's request `id` when its id was kept as written: `member` ("result"
  // or "error") holding `value`, with that id. False (nothing sent) for any other id.
  bool enqueue_raw_answer(const json& id, const char* member, const json& value) {
    auto raw = raw_ids.take(id);
    if (!raw) return false;
    enqueue("{\"jsonrpc\":\"2.0\",\"id\":" + *raw + ",\"" + member + "\":" + dump(value) + "}");
    return true;
  }

  void changed() {
    std::lock_guard lock(cb_mu);
    if (opt.on_change) opt.on_change();
  }

  void set_death(DeathCause cause) {
    {
      base::MutexLock lock(mu);
      if (death != DeathCause::none) return;
      death = cause;
    }
    cv.notify_all();
    changed();
  }

  void set_exited() {
    bool first_death;
    {
      base::MutexLock lock(mu);
      first_death = death == DeathCause::none;
      if (first_death) death = DeathCause::exited;
    }
    // Tell the supervisor before `exited` is visible: once it is, the supervisor may finish this
    // generation and the Bridge (which on_change points into) may be gone.
    if (first_death) cv.notify_all();
    changed();
    {
      base::MutexLock lock(mu);
      exited = true;
    }
    cv.notify_all();
  }

  void publish_counters() {
    base::MutexLock lock(mu);
    counters.frames_in = local_in;
    counters.frames_out = local_out;  // counters() adds the lines callers wrote through
    counters.invalid_json = local_invalid;
    counters.not_jsonrpc = local_notrpc;
    counters.oversize_lines = published_oversize = framer.oversize_dropped();
    counters.unknown_responses = local_unknown;
    counters.stderr_bytes = local_stderr;
    counters.outbound_stalls = local_stalls;
    counters.outbound_backlog = out_buf.size() - out_off;
  }

  void note(std::string_view text) {
    if (opt.trace) opt.trace->note(opt.generation, text);
  }

  // A line that is not JSON goes to the consumer as text, within the rate limit (Event::Kind::output).
  void pass_output(std::string_view line) {
    auto now = base::Clock::now();
    if (outputs_passed >= kOutputBurst && now - last_output < std::chrono::seconds(1)) return;
    ++outputs_passed;
    last_output = now;
    std::size_t n = std::min(line.size(), kMaxOutputText);
    while (n > 0 && n < line.size() && (static_cast<unsigned char>(line[n]) & 0xC0) == 0x80) --n;
    Event ev;
    ev.kind = Event::Kind::output;
    ev.generation = opt.generation;
    ev.message = {{"text", std::string(line.substr(0, n)) + (n < line.size() ? "…" : "")}};
    deliver(opt.events.get(), std::move(ev));
  }

  // The hot path: a line route_line() routes goes to the consumer as it is.
  bool pass_line(std::string_view line) {
    LineRoute route = route_line(line, opt.plain_notification);
    if (route == LineRoute::other) return false;
    Event ev;
    ev.kind = route == LineRoute::request ? Event::Kind::request : Event::Kind::notification;
    ev.generation = opt.generation;
    ev.line.assign(line);
    deliver(opt.events.get(), std::move(ev));
    return true;
  }

  // The hot path for a response (read_response: only its result or error is built).
  bool pass_response(std::string_view line) {
    auto r = line.find("\"method\"") == std::string_view::npos ? read_response(line) : std::nullopt;
    if (r) on_response(r->id, Reply{r->is_error ? Reply::Status::error : Reply::Status::result, std::move(r->value), 0});
    return r.has_value();
  }

  void on_response(std::optional<std::int64_t> id, Reply reply) {
    if (!id || !pending.complete(*id, std::move(reply))) {
      ++local_unknown;
      note("dropped a response to an id we are not waiting for");
    }
  }

  void handle_line(std::string_view line) {
    ++local_in;
    if (opt.trace) opt.trace->frame(opt.generation, Direction::from_bridge, line);
    if (pass_line(line)) return;
    if (pass_response(line)) return;
    auto msg = parse_line(line);
    if (!msg) {
      ++local_invalid;
      note("skipped a line that is not JSON");
      pass_output(line);
      return;
    }
    Classified c = classify(*msg);
    switch (c.kind) {
      case MessageKind::invalid:
        ++local_notrpc;
        note(std::string("skipped a line that is not JSON-RPC: ") + std::string(c.why));
        return;
      case MessageKind::response: {
        auto id = our_id((*msg)["id"]);
        Reply reply;
        if (auto r = msg->find("result"); r != msg->end()) {
          reply.status = Reply::Status::result;
          reply.value = std::move(*r);
        } else {
          reply.status = Reply::Status::error;
          reply.value = std::move((*msg)["error"]);
        }
        on_response(id, std::move(reply));
        return;
      }
      case MessageKind::request:
      case MessageKind::notification: {
        if (c.kind == MessageKind::request) {
          if (const json& id = (*msg)["id"]; id.is_number_float()) raw_ids.remember(id, raw_float_text(line, "id"));
        }
        Event ev;
        ev.kind = c.kind == MessageKind::request ? Event::Kind::request : Event::Kind::notification;
        ev.generation = opt.generation;
        ev.message = std::move(*msg);
        deliver(opt.events.get(), std::move(ev));
        return;
      }
    }
  }

  // Hands complete lines to their consumers while the event queue has room (or unconditionally,
  // for the last lines of a dead process). Returns false when it stopped for lack of room.
  //
  // The events of one pass reach the queue together (push_all: one lock, one wake-up), responses
  // included (deliver()): a consumer never sees a prompt's response without the lines that came
  // in the same read after it, which are the turn's late updates, not the next turn's; and a flood
  // costs one wake-up per read, not per line.
  bool process_lines(bool force) {
    BatchScope scope(opt.events.get(), batch);
    bool drained = false;
    // Room counted once per pass, not a lock per line. Pops meanwhile only make more (run() sees
    // it after clear_space); pushes from other threads (status, cancel) may overshoot by a few.
    const std::size_t room = force ? 0 : opt.events->room();
    while (force || batch.size() < room) {
      auto line = framer.next();
      if (!line) {
        drained = true;
        break;
      }
      // A dropped line is counted before anything after it is handed on: whoever gets the answer
      // that followed it can tell that something of it was lost.
      if (framer.oversize_dropped() != published_oversize) publish_counters();
      handle_line(*line);
    }
    opt.events->push_all(batch);
    return drained;
  }

  // Reads one chunk of stdout. Returns false at EOF or on a read error.
  bool read_stdout() {
    char buf[kReadChunk];
    ssize_t n = ::read(fds.stdout_r.get(), buf, sizeof buf);
    if (n > 0) {
      last_rx.store(base::Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
      framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    return false;
  }

  // `dying`: EOF while the process runs is a death of its own; after the exit it is just the end.
  void on_stdout_eof(bool dying = true) {
    stdout_open = false;
    if (auto rest = framer.finish()) {
      framer.push(*rest + "\n");
    }
    process_lines(true);
    waits.drop(WaitSet::out);
    fds.stdout_r.reset();
    note("bridge closed its stdout");
    if (dying) set_death(DeathCause::stdout_eof);
  }

  void drain_stderr() {
    char buf[kReadChunk];
    std::size_t total = 0;
    while (total < kStderrBurst) {
      ssize_t n = ::read(fds.stderr_r.get(), buf, sizeof buf);
      if (n > 0) {
        std::string_view bytes(buf, static_cast<std::size_t>(n));
        total += bytes.size();
        local_stderr += bytes.size();
        {
          base::MutexLock lock(mu);
          ring.append(bytes);
        }
        if (opt.stderr_copy_fd >= 0) {
          // A copy that cannot keep up loses bytes rather than stall the dispatcher.
          [[maybe_unused]] auto w = ::write(opt.stderr_copy_fd, bytes.data(), bytes.size());
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      stderr_open = false;  // EOF or error
      waits.drop(WaitSet::err);
      fds.stderr_r.reset();
      return;
    }
  }

  // `busy`: a caller is writing through; nothing is taken, and stdin is neither written nor
  // closed until it is done (it wakes the dispatcher then if it left work).
  void take_outbound(bool& stop, bool& close_in, bool& busy) {
    auto& lines = outbound_taken;  // empty: cleared at the end of each pass
    {
      base::MutexLock lock(out_mu);
      stop = stop_requested;
      close_in = close_stdin_requested;
      busy = writer_busy;
      if (busy) return;
      lines.swap(outbound);
      // A caller's line cut short by a full pipe: its rest goes before anything queued after it.
      if (fds.stdin_w) out_buf.append(direct_rest);
      direct_rest.clear();
    }
    for (auto& line : lines) {
      if (!fds.stdin_w) {  // stdin closed: nothing more reaches the bridge
        note("not sent (the bridge's stdin is closed): " + line);
        continue;
      }
      ++local_out;
      if (opt.trace) opt.trace->frame(opt.generation, Direction::to_bridge, line);
      out_buf.append(line);
      out_buf.push_back('\n');
    }
    lines.clear();
  }

  // Outbound backpressure. Invariant: while more than kOutboundLimit bytes wait for the bridge's
  // stdin, the dispatcher neither reads stdout nor hands on a buffered line (each could be a
  // request, and its answer would queue behind the others: a bridge that writes requests but never
  // reads would grow our memory without end). Its pipe fills and the bridge blocks on it. All else
  // goes on: stdin is polled for room (the backlog drains), stderr is drained, and the exit fd is
  // watched, so a bridge that dies while stalled is seen as before (exit fd, or EPIPE on stdin:
  // both reach set_death(), whose owner fails every waiter); final_drain() then reads what is left
  // of stdout regardless. A socket peer has no exit fd: its stdout is still polled, for hang-up
  // only (POLLHUP/POLLERR), and a hang-up reads on to the end. Once stdin is closed nothing will
  // drain, so nothing stalls: what waits is dropped with it.
  bool outbound_over_limit() const { return fds.stdin_w && out_buf.size() - out_off > kOutboundLimit; }

  // Closes stdin_w, with out_mu held (a caller takes the write-through under it). `orderly`: the
  // close asked for (close_stdin), which a socket peer must read as the end of its input; not
  // while a caller writes through (false then: its line came first, and it wakes us when done).
  bool close_stdin_fd(bool orderly = false) {
    base::MutexLock lock(out_mu);
    if (orderly && writer_busy) return false;
    direct_ok = false;
    waits.drop(WaitSet::in);
    if (orderly && stdin_socket) ::shutdown(fds.stdin_w.get(), SHUT_WR);
    fds.stdin_w.reset();
    return true;
  }

  void flush_stdin() {
    while (out_off < out_buf.size() && fds.stdin_w) {
      const char* data = out_buf.data() + out_off;
      std::size_t len = out_buf.size() - out_off;
      ssize_t n = stdin_socket ? ::send(fds.stdin_w.get(), data, len, MSG_NOSIGNAL)
                               : ::write(fds.stdin_w.get(), data, len);
      if (n > 0) {
        out_off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      // EPIPE (ECONNRESET on a socket): nobody reads the bridge's stdin any more, so the bridge is
      // dead to us.
      close_stdin_fd();
      out_buf.clear();
      out_off = 0;
      note("bridge's stdin is closed (EPIPE)");
      set_death(DeathCause::stdin_closed);
    }
    if (out_off == out_buf.size()) {
      out_buf.clear();
      out_off = 0;
    } else if (out_off > (std::size_t{1} << 20) && out_off > out_buf.size() / 2) {
      // A bridge that reads slowly but steadily may never empty the buffer: drop what it has read,
      // or the buffer would keep it (and grow past the outbound limit) for as long as that lasts.
      out_buf.erase(0, out_off);
      out_off = 0;
    }
  }

  // After the exit fd fired: take what the process left in its pipes, then stop.
  //
  // stdout: everything the bridge wrote is already in the pipe when its exit is seen, so we read
  // until the pipe is empty (EAGAIN) or closed, however long decoding takes on a busy machine; no
  // timer. A grandchild that inherited stdout can keep refilling it, so at most one pipe's worth
  // is read: what is beyond that was written after the exit and is not the bridge's output.
  // stderr: read for at most kExitDrain (a grandchild may hold it open forever).
  void final_drain() {
    if (stdout_open) {
      int pipe_size = ::fcntl(fds.stdout_r.get(), F_GETPIPE_SZ);
      std::size_t budget = pipe_size > 0 ? static_cast<std::size_t>(pipe_size) : std::size_t{64} << 10;
      char buf[kReadChunk];
      for (;;) {
        ssize_t n = ::read(fds.stdout_r.get(), buf, std::min(sizeof buf, budget));
        if (n > 0) {
          budget -= static_cast<std::size_t>(n);
          framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
          process_lines(true);
          if (budget == 0) {
            note("stopped reading stdout after the exit: a leftover process keeps writing");
            break;
          }
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) on_stdout_eof(false);
        break;  // EAGAIN: all that was written before the exit has been read
      }
      if (stdout_open) {
        // What is still buffered, a last line without its newline included, was the bridge's.
        if (auto rest = framer.finish()) framer.push(*rest + "\n");
        process_lines(true);
      }
    }
    auto deadline = base::Deadline::after(kExitDrain);
    while (stderr_open && !deadline.expired()) {
      pollfd p{fds.stderr_r.get(), POLLIN, 0};
      int r = ::poll(&p, 1, deadline.poll_timeout_ms());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      drain_stderr();
    }
  }

  // The writing side of one turn of run(): takes what callers queued, writes what the pipe takes,
  // closes stdin when asked and all that came before went out, and opens the write-through again
  // once nothing is held. Nothing of it while a caller writes through (it wakes us when done).
  // False when the connection is being destroyed.
  bool feed_stdin() {
    bool stop = false, close_in = false, busy = false;
    take_outbound(stop, close_in, busy);
    if (stop) return false;
    if (busy) return true;
    flush_stdin();
    // Closing stdin is the bridge's cue to exit; what was queued before the request goes first. A
    // bridge that never reads it is past its grace by then, and the stop ladder goes on.
    if (close_in && fds.stdin_w && out_buf.empty() && close_stdin_fd(/*orderly=*/true)) note("closed the bridge's stdin");
    if (out_buf.empty()) allow_write_through();
    return true;
  }

  // What run() waits for this turn (see its loop for `blocked` and `stalled`). False when epoll
  // refuses, errno set.
  bool want_waits(bool blocked, bool stalled, bool exit_open) {
    using W = WaitSet;
    constexpr int kIn = EPOLLIN, kOut = EPOLLOUT, hangup_only = 0;
    return waits.want(W::wake, wake.fd(), kIn) &&
           // Stalled on a socket peer: only a hang-up is of interest (there is no exit fd to tell).
           waits.want(W::out, fds.stdout_r.get(),
                      !stdout_open                 ? W::kNone
                      : !blocked && !stalled       ? kIn
                      : stalled && eof_is_exit     ? hangup_only
                                                   : W::kNone) &&
           waits.want(W::space, opt.events->space_fd(), blocked ? kIn : W::kNone) &&
           waits.want(W::err, fds.stderr_r.get(), stderr_open ? kIn : W::kNone) &&
           waits.want(W::in, fds.stdin_w.get(), fds.stdin_w && !out_buf.empty() ? kOut : W::kNone) &&
           waits.want(W::exit, fds.exit_fd.get(), exit_open ? kIn : W::kNone);
  }

  void run() {
    ::pthread_setname_np(::pthread_self(), opt.thread_name.substr(0, 15).c_str());
    bool exit_open = fds.exit_fd.valid();
    if (!waits.open()) note(std::string("waiting with poll(): no epoll set (") + std::strerror(errno) + ")");
    {
      base::MutexLock lock(out_mu);
      dispatcher_running = true;
    }
    for (;;) {
      if (!feed_stdin()) break;

      const bool stalled = stdout_open && outbound_over_limit();
      if (stalled && !outbound_stalled) {
        ++local_stalls;
        note("stopped reading stdout: the bridge does not read its stdin");
      }
      outbound_stalled = stalled;
      bool blocked = stdout_open && !stalled && !process_lines(false);  // lines waiting for room in the queue
      backpressured.store(blocked, std::memory_order_relaxed);
      if (blocked) opt.events->clear_space();
      if (blocked && opt.events->has_room()) continue;  // room appeared in between

      using W = WaitSet;
      bool set_ok = want_waits(blocked, stalled, exit_open);
      publish_counters();
      std::uint32_t rev[W::kSlots];
      int r = set_ok ? waits.wait(rev) : -1;
      if (r < 0) {
        if (set_ok && errno == EINTR) continue;
        // Cannot happen with valid fds; give up on this bridge, and say so, rather than spin.
        note(std::string("waiting on the bridge's fds failed: ") + std::strerror(errno));
        set_death(DeathCause::stdout_eof);
        if (eof_is_exit) set_exited();  // nothing else would ever say so
        break;
      }
      if (rev[W::wake]) wake.clear();
      if (rev[W::space]) opt.events->clear_space();
      if (rev[W::err]) drain_stderr();
      if (rev[W::in]) flush_stdin();
      if (rev[W::out]) {
        if (!read_stdout()) on_stdout_eof();
        else if (!stalled || (rev[W::out] & (EPOLLHUP | EPOLLERR))) process_lines(false);
      }
      if (eof_is_exit && !stdout_open) {
        // A socket peer: nothing more can come, and there is no process whose exit to wait for.
        publish_counters();
        note("the peer closed the connection");
        set_exited();
        break;
      }
      if (rev[W::exit]) {
        exit_open = false;
        end_write_through();  // the process is gone: nothing more is written to its stdin
        final_drain();
        publish_counters();
        note("bridge process exited");
        set_exited();
        break;
      }
    }
    end_write_through();  // nobody writes to a bridge whose dispatcher is gone
    publish_counters();
  }

  void end_write_through() {
    base::MutexLock lock(out_mu);
    dispatcher_running = false;
    direct_ok = false;
  }
};

Connection::Connection(ConnectionFds fds, ConnectionOptions options)
    : s_(std::make_unique<State>(std::move(fds), std::move(options))) {}

void Connection::start() {
  if (!s_->thread.joinable()) s_->thread = std::thread([state = s_.get()] { state->run(); });
}

bool Connection::backpressured() const { return s_->backpressured.load(std::memory_order_relaxed); }

Connection::~Connection() {
  {
    base::MutexLock lock(s_->out_mu);
    s_->stop_requested = true;
    s_->direct_ok = false;
  }
  s_->wake.notify();
  if (s_->thread.joinable()) s_->thread.join();
  // Whoever still waits learns that this connection is gone.
  Reply gone;
  gone.status = Reply::Status::closed;
  gone.value = {{"code", "bridge_exited"}, {"message", "the connection to the bridge was closed"}};
  s_->pending.close(gone);
}

Reply Connection::call(std::string_view method, json params, base::Deadline deadline) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Reply> reply;
  };
  auto w = std::make_shared<Waiter>();
  // On a closed table the completion has run already, and the wait below ends at once.
  std::int64_t id = send_call(method, raw_params(params), [w](Reply r) {
    {
      std::lock_guard lock(w->mu);
      w->reply = std::move(r);
    }
    w->cv.notify_one();
  });
  std::unique_lock lock(w->mu);
  auto done = [&] { return w->reply.has_value(); };
  if (deadline.is_never()) {
    w->cv.wait(lock, done);
  } else if (!w->cv.wait_until(lock, deadline.when(), done)) {
    lock.unlock();
    Reply timeout;
    timeout.status = Reply::Status::timeout;
    s_->pending.complete(id, std::move(timeout));  // loses to a reply that got there first
    lock.lock();
    w->cv.wait(lock, done);
  }
  return std::move(*w->reply);
}

std::int64_t Connection::call_async(std::string_view method, json params, Completion done) {
  return send_call(method, raw_params(params), std::move(done));
}

std::int64_t Connection::send_call(std::string_view method, const RawParams& params, Completion done) {
  bool closed = false;
  std::int64_t id = s_->pending.add(std::move(done), &closed);
  if (!closed) s_->enqueue(request_line(id, method, params));
  return id;
}

std::int64_t Connection::call_queued(std::string_view method, json params) {
  return call_queued_raw(method, raw_params(params));
}

std::int64_t Connection::call_queued_raw(std::string_view method, const RawParams& params) {
  // A raw pointer and the generation: small enough for std::function to hold without an
  // allocation. The queue outlives every completion: the table that runs them is the State's,
  // like opt.events.
  EventQueue* events = s_->opt.events.get();
  auto gen = s_->opt.generation;
  return send_call(method, params, [events, gen](Reply r) {
    Event ev;
    ev.kind = Event::Kind::response;
    ev.generation = gen;
    ev.call_id = r.id;
    ev.reply = std::move(r);
    deliver(events, std::move(ev));
  });
}

bool Connection::cancel(std::int64_t id) {
  Reply r;
  r.status = Reply::Status::cancelled;
  return s_->pending.complete(id, std::move(r));
}

void Connection::notify(std::string_view method, json params) {
  s_->enqueue(dump(make_notification(method, std::move(params))));
}

void Connection::respond(const json& id, json result) {
  if (!s_->enqueue_raw_answer(id, "result", result)) s_->enqueue(dump(make_result(id, std::move(result))));
}

void Connection::respond_error(const json& id, int code, std::string_view message, json data) {
  json msg = make_error(id, code, message, std::move(data));
  if (!s_->enqueue_raw_answer(id, "error", msg["error"])) s_->enqueue(dump(msg));
}

void Connection::close_stdin() {
  {
    base::MutexLock lock(s_->out_mu);
    s_->close_stdin_requested = true;
    s_->direct_ok = false;  // the lines queued before go first, then stdin closes
  }
  s_->wake.notify();
}

bool Connection::wait_exited(base::Deadline deadline) {
  base::MutexLock lock(s_->mu);
  auto done = [&]() REQUIRES(s_->mu) { return s_->exited; };
  if (deadline.is_never()) {
    lock.wait(s_->cv, done);
    return true;
  }
  return lock.wait_until(s_->cv, deadline.when(), done);
}

DeathCause Connection::death() const {
  base::MutexLock lock(s_->mu);
  return s_->death;
}

void Connection::fail_pending(const Reply& reply) { s_->pending.close(reply); }

void Connection::detach_on_change() {
  std::lock_guard lock(s_->cb_mu);
  s_->opt.on_change = nullptr;
}

std::string Connection::stderr_tail() const {
  base::MutexLock lock(s_->mu);
  return s_->ring.contents();
}

Counters Connection::counters() const {
  Counters c;
  {
    base::MutexLock lock(s_->mu);
    c = s_->counters;
  }
  // Written through by callers, so counted at once: the dispatcher did not see them.
  c.frames_out += s_->direct_out.load(std::memory_order_relaxed);
  return c;
}

base::TimePoint Connection::last_received() const {
  return base::TimePoint(base::Duration(s_->last_rx.load(std::memory_order_relaxed)));
}

std::uint64_t Connection::generation() const { return s_->opt.generation; }

}  // namespace tether::rpc
