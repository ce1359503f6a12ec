// See turn_log.h. The process's one log writer, and how a turn's events become its record.
#include "cli/turn_log.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <unordered_map>

#include "base/mutex.h"
#include "cli/option_values.h"
#include "cli/tool_view.h"
#include "store/log_writer.h"

namespace tether::cli {
namespace {

using nlohmann::json;

// What a record keeps of a turn, at most: an agent that streams without end must not make the log
// grow without end (the answer shown is not cut; its logged copy is, and says so).
constexpr std::size_t kMaxText = std::size_t{4} << 20;
constexpr std::size_t kMaxTools = 1000;
constexpr std::size_t kMaxPermissions = 1000;
constexpr std::size_t kMaxDiffText = std::size_t{1} << 20;

struct LogState {
  base::Mutex mu;
  std::unique_ptr<store::LogWriter> writer GUARDED_BY(mu);
  bool quiet GUARDED_BY(mu) = false;
  bool closed GUARDED_BY(mu) = false;
};

LogState& log_state() {
  static LogState state;
  return state;
}

// The writer for `path`, started by the process's first turn. One per process: a command logs to
// one place.
store::LogWriter* writer_for(const std::string& path, bool quiet) {
  LogState& s = log_state();
  base::MutexLock lock(s.mu);
  if (s.closed) return nullptr;
  if (!s.writer) {
    s.writer = std::make_unique<store::LogWriter>(path);
    s.quiet = quiet;
  }
  return s.writer.get();
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Whether `s` is UTF-8 as JSON's dump accepts it: no overlong forms, no surrogates, nothing past
// U+10FFFF (NUL is fine: JSON escapes it).
bool is_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : 0;
    if (n == 0 || i + n >= s.size()) return false;  // a lead byte that is none, or a cut sequence
    auto c1 = static_cast<unsigned char>(s[i + 1]);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
      return false;
    for (std::size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

// A string as the JSON layer keeps it: invalid UTF-8 replaced, as in every other dump. Valid text
// (all an agent sends: its JSON was parsed) is kept as it is; the round trip through a dump, which
// holds three more copies of a megabytes-long answer at once, is only for text that needs it.
void make_valid_text(std::string& s) {
  if (is_utf8(s)) return;
  std::string d = dump(json(s));
  s = json::parse(d, nullptr, false).get<std::string>();
}

constexpr std::string_view kCutNote = "\n[… cut: the turn log keeps 4 MiB of it]";

// Appends what fits under kMaxText. Past 64 KiB the text's buffer is sized for the cap at once:
// grown by doubling (std::string's way, which reserve() follows too), the last step would hold
// 8 MiB for 4 and copy 4 while both are alive; a buffer reserved whole costs only the pages the
// text fills.
void append_capped(std::string& to, std::string_view text) {
  if (to.size() >= kMaxText) return;
  std::size_t room = kMaxText - to.size();
  bool cut = text.size() >= room;
  if (cut) {
    // On a character boundary: a cut sequence would send the whole text through
    // make_valid_text's copies.
    while (room > 0 && (static_cast<unsigned char>(text[room]) & 0xC0) == 0x80) --room;
    text = text.substr(0, room);
  }
  constexpr std::size_t kSmall = std::size_t{64} << 10;
  std::size_t need = to.size() + text.size() + (cut ? kCutNote.size() : 0);
  if (need > to.capacity() && need > kSmall) {
    std::string whole;
    whole.reserve(kMaxText + kCutNote.size());
    whole.append(to);
    to = std::move(whole);
  }
  to.append(text);
  if (cut) to.append(kCutNote);
}

std::string expand_home(std::string path) {
  if (path.rfind("~/", 0) == 0) {
    if (const char* home = std::getenv("HOME"); home && *home) path = home + path.substr(1);
  }
  return path;
}

// This process's batch run: one id shared by every item it logs (Unix ms and the pid).
const std::string& batch_run_id() {
  static const std::string id = std::to_string(now_ms()) + "-" + std::to_string(::getpid());
  return id;
}

std::vector<std::string> line_list(std::string_view text) {
  auto views = split_lines(text.substr(0, kMaxDiffText));
  return {views.begin(), views.end()};
}

}  // namespace

void add_log_options(CLI::App& app, CommonOptions& o) {
  expects(app.add_option("--log", o.log, "Log each turn to the SQLite database FILE (default: $XDG_STATE_HOME/tether/logs.db)"),
          file_value())
      ->group("Output");
  app.add_flag("--no-log", o.no_log, "Log nothing of this run (see `tether log`)")->group("Output");
}

std::optional<std::string> log_path(const CommonOptions& o) {
  if (o.no_log) return std::nullopt;
  if (!o.log.empty()) return o.log;
  if (const char* env = std::getenv("TETHER_LOG"); env && *env) return expand_home(env);
  if (o.config_log) {
    if (o.config_log->empty()) return std::nullopt;
    return expand_home(*o.config_log);
  }
  std::string path = store::default_log_path();
  if (path.empty()) return std::nullopt;  // no HOME, no XDG_STATE_HOME: nowhere to log
  return path;
}

void start_turn_log(const CommonOptions& o) {
  if (auto path = log_path(o)) writer_for(*path, o.quiet);
}

void close_turn_log() {
  LogState& s = log_state();
  std::unique_ptr<store::LogWriter> writer;
  bool quiet = false;
  {
    base::MutexLock lock(s.mu);
    s.closed = true;
    writer = std::move(s.writer);
    quiet = s.quiet;
  }
  if (!writer) return;
  writer->close();
  if (auto warning = writer->warning(); warning && !quiet)
    error_line("warning: " + *warning + " (the turns were not logged; --no-log or `log = false` in the config turns the log off)");
}

std::string diff_summary(std::string_view path, std::string_view old_text, std::string_view new_text) {
  // A multiset of lines, not a real diff: the count a reader wants ("+3 -1"), at linear cost.
  std::unordered_map<std::string, long> count;
  for (auto& line : line_list(old_text)) ++count[line];
  long added = 0;
  for (auto& line : line_list(new_text)) {
    auto it = count.find(line);
    if (it != count.end() && it->second > 0) --it->second;
    else ++added;
  }
  long removed = 0;
  for (auto& [line, n] : count) removed += n;
  return "+" + std::to_string(added) + " -" + std::to_string(removed) + " " + std::string(path);
}

TurnRecorder::TurnRecorder(const CommonOptions& o, std::string_view source, std::string prompt,
                           const acp::SessionState& state) {
  auto path = log_path(o);
  if (!path) return;
  enabled_ = writer_for(*path, o.quiet) != nullptr;
  generation_ = state.generation;
  record_.agent = agent_label(o);
  record_.command = dump(o.connect.empty() ? json(o.bridge) : json::array());
  record_.connect = o.connect;
  record_.cwd = o.cwd;
  record_.source = source;
  record_.prompt = std::move(prompt);
  record_.started_ms = now_ms();
}

void TurnRecorder::see(const acp::TurnEvent& e) {
  using K = acp::TurnEvent::Kind;
  if (!enabled_ || ended_ || e.other_client) return;
  switch (e.kind) {
    case K::update: on_update(e.update); break;
    case K::permission: {
      if (permissions_.size() >= kMaxPermissions) break;
      const auto& p = e.permission;
      json options = json::array();
      for (const auto& opt : p.options) options.push_back({{"id", opt.id}, {"name", opt.name}, {"kind", opt.kind}});
      json q = {{"toolCallId", p.tool.id}, {"title", p.tool.title.value_or("")}, {"options", options}};
      if (p.answered) {
        q["answer"] = p.chosen ? p.chosen->name : "cancelled";
        q["by"] = "policy";
      } else {
        q["answer"] = nullptr;  // a person answers (answered())
      }
      permission_index_[p.token] = permissions_.size();
      permissions_.push_back(std::move(q));
      break;
    }
    case K::permission_withdrawn:
      if (auto it = permission_index_.find(e.permission.token); it != permission_index_.end())
        permissions_[it->second]["answer"] = "withdrawn";
      break;
    case K::retry:  // the prompt is sent again: what was collected is not the answer
      record_.answer.clear();
      record_.thoughts.clear();
      breaks_ = {};
      break;
    case K::completed:
      record_.stop_reason = e.stop_reason;
      ended_ = true;
      break;
    case K::failed:
      record_.error = dump(e.error);
      ended_ = true;
      break;
    default: break;
  }
}

void TurnRecorder::answered(std::uint64_t token, std::string_view choice) {
  auto it = permission_index_.find(token);
  if (!enabled_ || it == permission_index_.end()) return;
  permissions_[it->second]["answer"] = std::string(choice);
  permissions_[it->second]["by"] = "user";
}

void TurnRecorder::set_attachments(const nlohmann::json& names) {
  if (enabled_ && names.is_array() && !names.empty()) record_.attachments = names.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void TurnRecorder::set_batch(std::string_view id_json, std::int64_t index) {
  if (!enabled_) return;  // --no-log: a batch turn costs nothing here
  record_.batch_run = batch_run_id();
  json id = json::parse(id_json, nullptr, false);
  record_.batch_item = id.is_string() ? id.get<std::string>() : std::string(id_json);
  record_.batch_index = index;
}

void TurnRecorder::on_update(const acp::Update& u) {
  using K = acp::Update::Kind;
  std::string sep = breaks_.separator(u);
  switch (u.kind) {
    case K::agent_message:
      append_capped(record_.answer, sep);
      append_capped(record_.answer, u.text);
      break;
    case K::agent_thought: append_capped(record_.thoughts, u.text); break;
    case K::tool_call:
    case K::tool_call_update: {
      auto it = tools_.find(u.tool.id);
      if (it == tools_.end()) {
        if (tools_.size() >= kMaxTools) break;
        tool_order_.push_back(u.tool.id);
        it = tools_.emplace(u.tool.id, Tool{}).first;
        it->second.fields = {{"id", u.tool.id}, {"title", ""}, {"kind", ""}, {"status", "pending"}};
      }
      json& f = it->second.fields;
      if (u.tool.title) f["title"] = *u.tool.title;
      if (u.tool.kind) f["kind"] = *u.tool.kind;
      if (u.tool.status) f["status"] = *u.tool.status;
      if (!u.tool.locations.empty()) f["locations"] = u.tool.locations;
      const json* content = u.raw.is_object() ? &u.raw : nullptr;
      if (content && content->contains("content") && (*content)["content"].is_array()) {
        it->second.diffs.clear();  // an update's content replaces the tool call's
        for (const auto& block : (*content)["content"]) {
          if (!block.is_object() || block.value("type", "") != "diff" || it->second.diffs.size() >= 100) continue;
          auto text = [&](const char* key) {
            auto v = block.find(key);
            return v != block.end() && v->is_string() ? v->get<std::string>() : std::string();
          };
          it->second.diffs.push_back(diff_summary(text("path"), text("oldText"), text("newText")));
        }
      }
      break;
    }
    case K::plan: {
      json plan = json::array();
      for (const auto& p : u.plan) plan.push_back({{"content", p.content}, {"priority", p.priority}, {"status", p.status}});
      record_.plan = dump(plan);
      break;
    }
    case K::usage: usage_ = u.usage; break;
    default: break;
  }
}

void TurnRecorder::finish(const acp::SessionState& state) {
  if (!enabled_) return;
  enabled_ = false;
  record_.ended_ms = now_ms();
  record_.session_id = state.session_id;
  record_.restarts = static_cast<int>(state.generation > generation_ ? state.generation - generation_ : 0);
  json tools = json::array();
  for (const auto& id : tool_order_) {
    json t = tools_[id].fields;
    if (!tools_[id].diffs.empty()) t["diff"] = tools_[id].diffs;
    tools.push_back(std::move(t));
  }
  record_.tool_calls = dump(tools);
  record_.permissions = dump(permissions_);
  if (!usage_ && state.usage) usage_ = state.usage;
  if (usage_) {
    json u = {{"used", usage_->used}, {"size", usage_->size}};
    if (usage_->cost) u["cost"] = *usage_->cost, u["currency"] = usage_->currency;
    record_.usage = dump(u);
  }
  make_valid_text(record_.prompt);
  make_valid_text(record_.answer);
  make_valid_text(record_.thoughts);
  store::LogWriter* writer = writer_for("", false);
  if (writer) writer->add(std::move(record_));
}

}  // namespace tether::cli
