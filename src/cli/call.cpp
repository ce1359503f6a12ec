#include "cli/call.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>

#include "acp/outcome.h"
#include "cli/terminal_text.h"
#include "rpc/line_framer.h"
#include "rpc/message.h"

namespace tether::cli {
namespace {

using rpc::json;

// One script line turned into what to send.
struct Outgoing {
  bool is_request = false;
  json user_id;       // the id as the user wrote it; the bridge sees one of ours
  std::string method;
  json params;        // null when absent
};

std::optional<Outgoing> parse_outgoing(const json& msg, std::string& why) {
  if (!msg.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  auto m = msg.find("method");
  if (m == msg.end() || !m->is_string()) {
    why = "no \"method\" string";
    return std::nullopt;
  }
  if (auto v = msg.find("jsonrpc"); v != msg.end() && *v != "2.0") {
    why = "\"jsonrpc\" must be \"2.0\"";
    return std::nullopt;
  }
  Outgoing out;
  out.method = m->get<std::string>();
  if (auto p = msg.find("params"); p != msg.end()) {
    if (!p->is_object() && !p->is_array()) {
      why = "\"params\" must be an object or an array";
      return std::nullopt;
    }
    out.params = *p;
  }
  if (auto id = msg.find("id"); id != msg.end()) {
    out.is_request = true;
    out.user_id = *id;
  }
  return out;
}

// A run ends on the worst of its outcomes (acp::worse_exit): a dead bridge outranks a timeout, then
// I/O and internal errors, then bad input, then a JSON-RPC error answer.
class CallRunner {
 public:
  CallRunner(CallOptions& o, supervisor::Bridge& bridge, base::UniqueFd sig)
      : o_(o), bridge_(bridge), sig_(std::move(sig)) {}

  int run() {
    if (!o_.method.empty()) {
      Outgoing out;
      out.is_request = true;
      out.user_id = 1;
      out.method = o_.method;
      if (!o_.params.empty()) {
        auto p = rpc::parse_line(o_.params);
        if (!p || !(p->is_object() || p->is_array())) {
          error_line("PARAMS_JSON must be a JSON object or array: " + o_.params);
          return kExitUsage;
        }
        out.params = *p;
      }
      script_done_ = true;
      send(out);
    }
    loop();
    return status_;
  }

 private:
  void send(const Outgoing& out) {
    if (!out.is_request) {
      bridge_.notify(out.method, out.params);
      return;
    }
    inflight_ = true;
    inflight_user_id_ = out.user_id;
    inflight_id_ = bridge_.call_queued(out.method, out.params, &inflight_gen_);
    deadline_ = o_.common.timeout > 0 ? base::Deadline::after(base::seconds(o_.common.timeout))
                                      : base::Deadline::never();
  }

  void emit(const json& line) {
    std::string text = json_for_fd(STDOUT_FILENO, rpc::dump(line));  // same JSON, nothing a terminal acts on
    text += '\n';
    if (!write_stdout(text)) {
      if (errno == EPIPE) {
        bridge_.stop();
        reraise(SIGPIPE);
      }
      error_line(std::string("cannot write to stdout: ") + strerror(errno));
      status_ = acp::worse_exit(status_, kExitIoErr);
      finished_ = true;
    }
  }

  void on_reply(rpc::Reply& reply) {
    inflight_ = false;
    json line;
    switch (reply.status) {
      case rpc::Reply::Status::result:
        line = rpc::make_result(inflight_user_id_, std::move(reply.value));
        break;
      case rpc::Reply::Status::error:
        line = {{"jsonrpc", "2.0"}, {"id", inflight_user_id_}, {"error", std::move(reply.value)}};
        status_ = acp::worse_exit(status_, kExitNotClean);
        break;
      case rpc::Reply::Status::timeout:
      case rpc::Reply::Status::cancelled:
        line = {{"id", inflight_user_id_},
                {"error", acp::error_object("timeout", "no response within " + format_secs(o_.common.timeout))}};
        status_ = acp::worse_exit(status_, kExitTimeout);
        break;
      case rpc::Reply::Status::closed:
        // tether's own error object (string code), not the bridge's: there is no "jsonrpc" member.
        line = {{"id", inflight_user_id_}, {"error", reply.value}};
        if (reply.value.contains("message")) error_line(reply.value["message"].get<std::string>());
        status_ = acp::worse_exit(status_, kExitUnavailable);
        // With --restart the script goes on once the bridge is back (this request is not sent
        // again: it may not be idempotent); without, or past the budget, it ends here.
        if (!o_.restart || reply.value.value("code", "") == "restart_limit") bridge_dead_ = true;
        break;
    }
    emit(line);
  }

  static std::string format_secs(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g s", s);
    return buf;
  }

  void handle_events() {
    for (auto& ev : bridge_.events()->drain()) {
      switch (ev.kind) {
        case rpc::Event::Kind::response:
          // Ours only if both the id and the generation match (each generation numbers anew).
          if (inflight_ && ev.call_id == inflight_id_ && (ev.generation == inflight_gen_ || inflight_gen_ == 0))
            on_reply(ev.reply);
          break;
        case rpc::Event::Kind::notification:
          if (o_.notifications) emit(ev.message);
          break;
        case rpc::Event::Kind::output:
          // A line that is not JSON: MCP servers log banners there by mistake; a person may need it.
          if (o_.notifications) error_line("the bridge wrote on stdout: " + ev.message.value("text", ""));
          break;
        case rpc::Event::Kind::request:
          // `call` advertises nothing, so it serves no request of the bridge's.
          if (o_.notifications) emit(ev.message);
          bridge_.respond_error(ev.generation, ev.message["id"], rpc::kMethodNotFound,
                                "tether call serves no requests");
          break;
        case rpc::Event::Kind::status: {
          const std::string state = ev.message.value("state", "");
          ready_ = state == "ready";
          bool gone = (state == "exited" && !o_.restart) || state == "failed";
          // Dead while idle with work left (more lines, or stdin still open): say so now rather
          // than at the next request. A bridge that exits after the last answer is not an error.
          bool work_left = !script_done_ && !(stdin_eof_ && pending_lines_.empty());
          if (gone && !inflight_ && !stopping_ && !bridge_dead_ && work_left) {
            std::string why = ev.message.contains("message") ? ev.message["message"].get<std::string>()
                              : ev.message.contains("error") ? ev.message["error"].value("message", "")
                                                              : "the bridge exited";
            error_line(why);
            status_ = acp::worse_exit(status_, kExitUnavailable);
            bridge_dead_ = true;
          } else if (gone) {
            bridge_dead_ = true;
          }
          break;
        }
      }
      if (finished_) return;
    }
  }

  void read_stdin() {
    char buf[64 * 1024];
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      stdin_eof_ = true;
      if (auto rest = framer_.finish()) pending_lines_.push_back(*rest);
    } else {
      framer_.push(std::string_view(buf, static_cast<std::size_t>(n)));
      while (auto line = framer_.next()) pending_lines_.emplace_back(*line);
    }
  }

  // Sends queued script lines: notifications at once, a request only when none is in flight.
  void pump_script() {
    while (!inflight_ && ready_ && !pending_lines_.empty() && !bridge_dead_ && !finished_) {
      std::string line = std::move(pending_lines_.front());
      pending_lines_.erase(pending_lines_.begin());
      ++line_no_;
      std::string why;
      auto msg = rpc::parse_line(line);
      std::optional<Outgoing> out;
      if (!msg) why = "not valid JSON";
      else out = parse_outgoing(*msg, why);
      if (!out) {
        json id = msg && msg->is_object() && msg->contains("id") ? (*msg)["id"] : json(nullptr);
        emit({{"id", id}, {"error", acp::error_object("bad_input", "input line " + std::to_string(line_no_) + ": " + why)}});
        status_ = acp::worse_exit(status_, kExitDataErr);
        continue;
      }
      send(*out);
    }
    if (stdin_eof_ && pending_lines_.empty() && !inflight_) script_done_ = true;
  }

  void loop() {
    while (!finished_) {
      pump_script();
      if ((script_done_ && !inflight_) || (bridge_dead_ && !inflight_)) break;

      pollfd p[3];
      nfds_t n = 0;
      p[n++] = {sig_.get(), POLLIN, 0};
      p[n++] = {bridge_.events()->fd(), POLLIN, 0};
      bool want_stdin = o_.method.empty() && !stdin_eof_ && pending_lines_.empty();
      if (want_stdin) p[n++] = {STDIN_FILENO, POLLIN, 0};
      int timeout = inflight_ ? deadline_.poll_timeout_ms() : -1;
      int r = ::poll(p, n, timeout);
      if (r < 0 && errno != EINTR) {
        error_line(std::string("poll: ") + strerror(errno));
        status_ = acp::worse_exit(status_, kExitSoftware);
        break;
      }
      if (r > 0 && p[0].revents) {
        int sig = read_signal(sig_.get());
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
          stopping_ = true;
          bridge_.stop();
          reraise(sig);
        }
      }
      if (r > 0 && p[1].revents) handle_events();
      if (want_stdin && r > 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) read_stdin();
      if (inflight_ && deadline_.expired()) {
        // Cancel our wait; the cancelled reply arrives as an event and is reported as a timeout.
        bridge_.cancel(inflight_gen_, inflight_id_);
        handle_events();
      }
    }
    stopping_ = true;
    if (!pending_lines_.empty() && bridge_dead_) {
      std::size_t left = pending_lines_.size();
      error_line(std::to_string(left) + " more input line" + (left == 1 ? " was" : "s were") + " not sent");
    }
  }

  CallOptions& o_;
  supervisor::Bridge& bridge_;
  base::UniqueFd sig_;
  rpc::LineFramer framer_;
  std::vector<std::string> pending_lines_;
  std::size_t line_no_ = 0;
  bool stdin_eof_ = false;
  bool script_done_ = false;
  bool inflight_ = false;
  json inflight_user_id_;
  std::int64_t inflight_id_ = 0;
  std::uint64_t inflight_gen_ = 0;
  base::Deadline deadline_ = base::Deadline::never();
  bool bridge_dead_ = false;
  bool ready_ = true;  // Bridge::start() returned: a generation runs until a status event says not
  bool stopping_ = false;
  bool finished_ = false;
  int status_ = kExitOk;
};

}  // namespace

int run_call(CallOptions& o) {
  if (auto err = finish_options(o.common)) {
    error_line(err->message);
    return err->exit_code;
  }
  supervisor::BridgeOptions bo;
  if (auto err = make_bridge_options(o.common, o.restart, bo)) {
    error_line(err->message);
    return err->exit_code;
  }
  supervisor::Bridge bridge(std::move(bo));
  // Started like every command's bridge (cli::start_bridge): a termination signal during the start
  // ends tether by that signal, as it does once running.
  auto sig = open_signal_fd();
  int caught = 0;
  if (auto failed = start_bridge(bridge, sig.get(), &caught)) {
    if (caught) reraise(caught);
    error_line(supervisor::describe(*failed));
    return kExitUnavailable;
  }
  CallRunner runner(o, bridge, std::move(sig));
  int status = runner.run();
  bridge.stop();
  return status;
}

std::function<int()> setup_call(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<CallOptions>();
  auto* sub = app.add_subcommand("call", "Send raw JSON-RPC to a stdio server and print the responses as JSON lines");
  sub->footer(
      "With METHOD, sends one request and prints its response. Without it, reads JSON-RPC messages\n"
      "from stdin, one per line (\"jsonrpc\" may be omitted): a line with an \"id\" is a request, sent\n"
      "once the previous response arrived; a line without is a notification, sent at once.\n"
      "No handshake is implied: tether call speaks exactly what it is given.\n"
      "Exit status: 0 every request got a result; 1 one got a JSON-RPC error; 65 a malformed input\n"
      "line; 69 the bridge died or could not start; 75 a request timed out.");
  sub->add_option("METHOD", o->method, "Method of the one request to send")->type_name("METHOD");
  sub->add_option("PARAMS_JSON", o->params, "Its params: a JSON object or array")->type_name("JSON");
  sub->add_flag("--notifications", o->notifications, "Also print the bridge's notifications and requests as JSON lines");
  sub->add_flag("--restart", o->restart, "Restart the bridge when it dies (off: requests may not be idempotent)");
  // call speaks only the JSON-RPC it is given: it answers no request of the bridge's (so no
  // --permission, --allow-fs), never sends a request twice (no --retries), and writes only JSON
  // lines and error lines (no --color, -q, -v).
  add_common_options(*sub, o->common,
                     {.retries = false, .permission = false, .allow_fs = false, .allow_terminal = false, .color = false,
                      .quiet = false, .verbose = false});
  return [o, &bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_call(*o);
  };
}

}  // namespace tether::cli
