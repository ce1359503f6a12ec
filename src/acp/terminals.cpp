#include "acp/terminals.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include <thread>
#include <variant>

#include "base/signals.h"
#include "proc/terminal_process.h"
#include "rpc/connection.h"
#include "rpc/message.h"

namespace tether::acp {
namespace {

using nlohmann::json;

// How much of one terminal's output one pump() reads: a flood must leave the session time for
// the agent's messages (the fd stays readable, so the next pump reads on).
constexpr std::size_t kPumpBudget = std::size_t{256} << 10;
// Bounds on what the agent sends: argv and environment together, and their entries.
constexpr std::size_t kMaxCommandBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxEntries = 4096;

json exit_json(const proc::ExitStatus& s) {
  return {{"exitCode", s.signaled ? json(nullptr) : json(s.code)},
          {"signal", s.signaled ? json(base::signal_name(s.signal)) : json(nullptr)}};
}

// The bytes `s` takes as a JSON string (a close estimate: control bytes as \u00XX).
std::size_t json_size(std::string_view s) {
  std::size_t n = 2;
  for (unsigned char c : s) n += c < 0x20 ? 6 : (c == '"' || c == '\\') ? 2 : 1;
  return n;
}

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

// The argv and environment of a terminal/create, or why not.
struct Command {
  proc::SpawnOptions spawn;
  std::string shown;  // for the front-end
  std::size_t limit = kDefaultOutputLimit;
};

std::variant<Command, std::string> read_command(const json& p) {
  Command c;
  const json* cmd = rpc::member(p, "command");
  if (!cmd || !cmd->is_string() || cmd->get_ref<const std::string&>().empty()) return std::string("no command");
  const std::string& command = cmd->get_ref<const std::string&>();
  std::size_t bytes = command.size();
  std::vector<std::string> args;
  if (const json* a = rpc::member(p, "args"); a && !a->is_null()) {
    if (!a->is_array() || a->size() > kMaxEntries) return std::string("args must be an array of strings");
    for (const auto& v : *a) {
      if (!v.is_string()) return std::string("args must be an array of strings");
      args.push_back(v.get<std::string>());
      bytes += args.back().size() + 1;
    }
  }
  if (const json* e = rpc::member(p, "env"); e && !e->is_null()) {
    if (!e->is_array() || e->size() > kMaxEntries) return std::string("env must be an array of {name, value}");
    for (const auto& v : *e) {
      const json* n = v.is_object() ? rpc::member(v, "name") : nullptr;
      const json* val = v.is_object() ? rpc::member(v, "value") : nullptr;
      if (!n || !n->is_string() || !val || !val->is_string()) return std::string("env must be an array of {name, value}");
      const std::string& name = n->get_ref<const std::string&>();
      if (name.empty() || name.find('=') != std::string::npos || has_nul(name) || has_nul(val->get_ref<const std::string&>()))
        return "bad environment variable name: " + name;
      c.spawn.extra_env.push_back(name + "=" + val->get<std::string>());
      bytes += c.spawn.extra_env.back().size() + 1;
    }
  }
  if (const json* l = rpc::member(p, "outputByteLimit"); l && !l->is_null()) {
    if (!l->is_number_unsigned() && !(l->is_number_integer() && l->get<long long>() >= 0))
      return std::string("outputByteLimit must be a non-negative integer");
    c.limit = std::min<std::uint64_t>(l->get<std::uint64_t>(), kMaxOutputLimit);
  }
  if (bytes > kMaxCommandBytes) return std::string("the command, its args and env are too long");
  if (has_nul(command)) return std::string("the command contains a NUL byte");
  for (const auto& a : args)
    if (has_nul(a)) return std::string("an argument contains a NUL byte");
  c.shown = command;
  for (const auto& a : args) c.shown += " " + a;
  // No args: a shell command line, as agents that send one line expect.
  if (args.empty()) c.spawn.argv = {"/bin/sh", "-c", command};
  else {
    c.spawn.argv = {command};
    c.spawn.argv.insert(c.spawn.argv.end(), args.begin(), args.end());
  }
  return c;
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) ? std::string(buf) : std::string();
}

}  // namespace

struct Terminals::Entry {
  std::string id;
  std::string session_id;
  std::uint64_t gen = 0;
  std::unique_ptr<proc::TerminalProcess> proc;
  std::vector<json> waits;  // ids of pending wait_for_exit requests (of generation gen)
  bool told_exit = false;
  bool released = false;
};

Terminals::Terminals(const std::string& root, int wake_fd, bool refuse_create, TerminalObserver observer)
    : root_(real_path(root)),
      refuse_create_(refuse_create),
      observer_(std::move(observer)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_fd, &ev);
}

Terminals::~Terminals() {
  // Every group gets its SIGTERM at once, and the grace runs for all of them together.
  for (auto& [id, e] : live_) e->proc->stop(kKillGrace);
  for (auto& e : released_) e->proc->stop(kKillGrace);
  auto until = base::Deadline::after(kKillGrace + std::chrono::milliseconds(200));
  for (;;) {
    bool all_gone = true;
    auto step = [&](Entry& e) {
      e.proc->pump(kPumpBudget);  // a writer blocked on a full pipe would never see its signal
      all_gone = e.proc->tick() && all_gone;
    };
    for (auto& [id, e] : live_) step(*e);
    for (auto& e : released_) step(*e);
    if (all_gone || until.expired()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // What is left is SIGKILLed and reaped by TerminalProcess's destructor.
}

void Terminals::request(std::uint64_t gen, const json& id, const std::string& method, const json& params,
                        const std::string& session_id) {
  if (method == "terminal/create") return create(gen, id, params, session_id);
  if (method != "terminal/output" && method != "terminal/wait_for_exit" && method != "terminal/kill" &&
      method != "terminal/release")
    return fail(gen, id, rpc::kMethodNotFound, "Method not found: " + method);
  Entry* e = find(params, session_id, id, gen);
  if (!e) return;
  if (method == "terminal/output") {
    std::size_t size = json_size(e->proc->output());
    if (backlog_ > rpc::kOutboundLimit || (answered_bytes_ > 0 && answered_bytes_ + size > kOutputAnswerBudget))
      return fail(gen, id, rpc::kInternalError,
                  "tether is busy: earlier terminal answers are still waiting to be read by the agent; ask again later");
    answered_bytes_ += size;
    json r = {{"output", std::string(e->proc->output())}, {"truncated", e->proc->truncated()}};
    if (const auto& st = e->proc->exit_status()) r["exitStatus"] = exit_json(*st);
    answer(gen, id, std::move(r));
  } else if (method == "terminal/wait_for_exit") {
    if (const auto& st = e->proc->exit_status()) answer(gen, id, exit_json(*st));
    else if (e->waits.size() >= kMaxWaits)
      fail(gen, id, rpc::kInternalError, "too many pending terminal/wait_for_exit requests for " + e->id);
    else e->waits.push_back(id);
  } else if (method == "terminal/kill") {
    e->proc->stop(kKillGrace);
    answer(gen, id, json::object());
  } else {  // terminal/release
    release(live_.find(e->id));
    answer(gen, id, json::object());
  }
}

Terminals::Entry* Terminals::find(const json& params, const std::string& session_id, const json& id, std::uint64_t gen) {
  std::string tid = rpc::string_of(params, "terminalId");
  auto it = live_.find(tid);
  if (it == live_.end() || it->second->session_id != session_id || rpc::string_of(params, "sessionId") != session_id) {
    fail(gen, id, rpc::kInvalidParams, "unknown terminalId for this session: " + tid);
    return nullptr;
  }
  return it->second.get();
}

void Terminals::create(std::uint64_t gen, const json& id, const json& params, const std::string& session_id) {
  auto command = read_command(params);
  std::string shown = std::holds_alternative<Command>(command) ? std::get<Command>(command).shown
                                                               : rpc::string_of(params, "command");
  auto refuse = [&](int code, std::string why) {
    if (observer_) observer_({TerminalActivity::Kind::refused, "", shown, why, std::nullopt});
    fail(gen, id, code, std::move(why));
  };
  if (refuse_create_)
    return refuse(rpc::kInternalError, "tether refuses to run commands for the agent under --permission deny");
  if (session_id.empty() || rpc::string_of(params, "sessionId") != session_id)
    return refuse(rpc::kInvalidParams, "unknown sessionId");
  if (auto* why = std::get_if<std::string>(&command)) return refuse(rpc::kInvalidParams, *why);
  Command& c = std::get<Command>(command);
  if (live_count() >= kMaxTerminals)
    return refuse(rpc::kInternalError, "tether runs at most " + std::to_string(kMaxTerminals) +
                                           " terminals at once: release one first");
  // Where it starts: the session's cwd, or a directory below it.
  std::string cwd = rpc::string_of(params, "cwd");
  if (cwd.empty()) cwd = root_;
  else if (cwd[0] != '/') cwd = root_ + "/" + cwd;
  std::string real = real_path(cwd);
  if (root_.empty() || real.empty() || (real != root_ && real.rfind(root_ == "/" ? "/" : root_ + "/", 0) != 0))
    return refuse(rpc::kInvalidParams, "cwd " + cwd + " is not a directory inside the session's cwd " + root_);
  if (struct stat st{}; ::stat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return refuse(rpc::kInvalidParams, "cwd " + cwd + " is not a directory");
  c.spawn.cwd = real;
  auto started = proc::TerminalProcess::start(std::move(c.spawn), c.limit);
  if (auto* err = std::get_if<proc::SpawnError>(&started)) return refuse(rpc::kInternalError, "cannot run " + err->what);
  auto e = std::make_unique<Entry>();
  e->id = "term-" + std::to_string(++next_id_);
  e->session_id = session_id;
  e->gen = gen;
  e->proc = std::move(std::get<std::unique_ptr<proc::TerminalProcess>>(started));
  watch(*e);
  if (observer_) observer_({TerminalActivity::Kind::started, e->id, shown, "", std::nullopt});
  answer(gen, id, {{"terminalId", e->id}});
  live_.emplace(e->id, std::move(e));
}

// Registered level-triggered: fd() stays readable while a terminal has unread output or an exit
// not yet seen. The fds leave the epoll set when TerminalProcess closes them (EOF, exit seen):
// nothing else holds their open file descriptions.
void Terminals::watch(Entry& e) {
  for (int fd : {e.proc->output_fd(), e.proc->exit_fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (fd >= 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
}

void Terminals::pump() {
  for (auto& [id, e] : live_) pump_one(*e);
  for (auto it = released_.begin(); it != released_.end();) {
    pump_one(**it);
    // Gone once nothing is left of its command and nobody waits for its exit.
    if ((*it)->proc->tick() && (*it)->waits.empty()) it = released_.erase(it);
    else ++it;
  }
}

void Terminals::pump_one(Entry& e) {
  std::string fresh = e.proc->pump(kPumpBudget);
  if (!fresh.empty() && observer_ && !e.released)
    observer_({TerminalActivity::Kind::output, e.id, "", std::move(fresh), std::nullopt});
  if (const auto& st = e.proc->exit_status(); st && !e.told_exit) {
    e.told_exit = true;
    for (auto& w : e.waits) answer(e.gen, w, exit_json(*st));
    e.waits.clear();
    if (observer_) observer_({TerminalActivity::Kind::exited, e.id, "", "", st});
  }
  if (e.proc->stopping()) e.proc->tick();
}

void Terminals::release(std::map<std::string, std::unique_ptr<Entry>>::iterator it) {
  if (it == live_.end()) return;
  std::unique_ptr<Entry> e = std::move(it->second);
  live_.erase(it);
  e->released = true;
  e->proc->stop(kKillGrace);
  released_.push_back(std::move(e));
}

void Terminals::release_all() {
  while (!live_.empty()) release(live_.begin());
}

void Terminals::drop_generation(std::uint64_t gen) {
  for (auto it = live_.begin(); it != live_.end();) {
    auto next = std::next(it);
    if (it->second->gen == gen) {
      it->second->waits.clear();
      release(it);
    }
    it = next;
  }
  for (auto& e : released_)
    if (e->gen == gen) e->waits.clear();
}

std::optional<std::string> Terminals::output_of(const std::string& terminal_id) const {
  auto it = live_.find(terminal_id);
  if (it == live_.end()) return std::nullopt;
  return std::string(it->second->proc->output());
}

base::Deadline Terminals::next_deadline() const {
  base::Deadline d = base::Deadline::never();
  for (const auto& [id, e] : live_) d = base::Deadline::earliest(d, e->proc->next_deadline());
  for (const auto& e : released_) d = base::Deadline::earliest(d, e->proc->next_deadline());
  return d;
}

// Released terminals count until their group is gone: an agent that creates and releases in a
// loop must not pile up processes that take their grace period to die. A terminal whose command
// has exited (and is not being stopped) does not count: it keeps only its output until released.
std::size_t Terminals::live_count() const {
  std::size_t n = released_.size();
  for (const auto& [id, e] : live_)
    if (!e->proc->exit_status() || e->proc->stopping()) ++n;
  return n;
}

void Terminals::answer(std::uint64_t gen, const json& id, json result) {
  answers_.push_back({gen, id, std::move(result), 0, {}});
}

void Terminals::fail(std::uint64_t gen, const json& id, int code, std::string message) {
  answers_.push_back({gen, id, nullptr, code, std::move(message)});
}

}  // namespace tether::acp
