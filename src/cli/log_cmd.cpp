// See log_cmd.h. The three forms of `tether log`, in text and in JSON.
#include "cli/log_cmd.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/launch.h"
#include "cli/option_values.h"
#include "cli/render.h"
#include "cli/terminal_text.h"
#include "cli/turn_log.h"
#include "store/log_db.h"

namespace tether::cli {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A JSON column as stored; text that does not parse (it always does: tether wrote it) is null.
json column(const std::string& text) { return json::parse(text, nullptr, false, true); }
json safe_column(const std::string& text) {
  json j = column(text);
  return j.is_discarded() ? json(nullptr) : j;
}

std::string local_time(std::int64_t ms, bool seconds = true) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, seconds ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M", &tm);
  return buf;
}

std::string iso_utc(std::int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

std::string seconds_text(std::int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

// One turn as `--json` gives it (man tether, LOG): stable keys, in this order.
ordered_json turn_json(const store::TurnRow& row) {
  const store::TurnRecord& r = row.record;
  ordered_json batch = nullptr;
  if (!r.batch_run.empty()) batch = {{"run", r.batch_run}, {"item", r.batch_item}, {"index", r.batch_index}};
  return ordered_json{
      {"id", row.id},
      {"conversation", row.conversation},
      {"seq", row.seq},
      {"agent", r.agent},
      {"command", safe_column(r.command)},
      {"sessionId", r.session_id},
      {"cwd", r.cwd},
      {"title", row.title},
      {"source", r.source},
      {"connect", r.connect},
      {"prompt", r.prompt},
      {"attachments", safe_column(r.attachments)},
      {"answer", r.answer},
      {"thoughts", r.thoughts},
      {"toolCalls", safe_column(r.tool_calls)},
      {"plan", safe_column(r.plan)},
      {"permissions", safe_column(r.permissions)},
      {"stopReason", r.stop_reason},
      {"usage", safe_column(r.usage)},
      {"error", safe_column(r.error)},
      {"startedAt", iso_utc(r.started_ms)},
      {"startedMs", r.started_ms},
      {"endedMs", r.ended_ms},
      {"elapsedMs", r.ended_ms - r.started_ms},
      {"restarts", r.restarts},
      {"batch", batch},
  };
}

bool print_json_line(const ordered_json& j) {
  return write_stdout(json_for_fd(STDOUT_FILENO, j.dump(-1, ' ', false, json::error_handler_t::replace)) + "\n");
}

// The first `lines` lines of `text`, each cut to `width` bytes, flattened for one terminal line each.
std::string preview(std::string_view text, int lines, std::size_t width) {
  std::string out;
  for (int i = 0; i < lines && !text.empty(); ++i) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    std::string shown = terminal_line(line.substr(0, width));
    if (line.size() > width) shown += "…";
    out += "  " + shown + "\n";
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
    if (i + 1 == lines && !text.empty()) out += "  …\n";
  }
  return out;
}

std::string turn_heading(const store::TurnRow& row) {
  const store::TurnRecord& r = row.record;
  std::string outcome = r.stop_reason.empty() ? "failed" : r.stop_reason;
  if (r.stop_reason.empty()) {
    json e = safe_column(r.error);
    if (e.is_object() && e.contains("code") && e["code"].is_string()) outcome = "failed: " + e["code"].get<std::string>();
  }
  return "#" + std::to_string(row.conversation) + "." + std::to_string(row.seq) + "  " + local_time(r.started_ms) +
         "  " + terminal_line(r.agent) + "  " + terminal_line(r.cwd) + "  " + seconds_text(r.ended_ms - r.started_ms) +
         "  " + terminal_line(outcome) + (r.source.empty() ? "" : "  (" + r.source + ")") + "\n";
}

int list_turns(store::LogDb& db, const LogOptions& o, std::int64_t since) {
  store::TurnQuery q;
  q.limit = o.limit;
  q.agent = o.agent;
  q.cwd = o.cwd;
  q.since_ms = since;
  for (const auto& w : o.search) q.search += (q.search.empty() ? "" : " ") + w;
  auto found = db.turns(q);
  if (auto* err = std::get_if<std::string>(&found)) {
    error_line("log -q: " + *err);
    return kExitUsage;
  }
  auto& rows = std::get<std::vector<store::TurnRow>>(found);
  std::reverse(rows.begin(), rows.end());  // the newest last, next to the prompt
  if (rows.empty() && !o.json) {
    error_line(o.search.empty() && o.agent.empty() && o.cwd.empty() && since == 0 ? "no turns logged yet"
                                                                                  : "no turns match");
  }
  for (const auto& row : rows) {
    bool ok = o.json ? print_json_line(turn_json(row))
                     : write_stdout(turn_heading(row) + "  > " + terminal_line(row.record.prompt.substr(0, 200)) +
                                    (row.record.prompt.size() > 200 ? "…" : "") + "\n" + preview(row.record.answer, 3, 160));
    if (!ok) return errno == EPIPE ? kExitOk : kExitIoErr;
  }
  return kExitOk;
}


// The conversation `show ID` means: a number (or #N, or #N.M from the list), else an ACP session
// id; none: the latest turn's.
std::optional<std::int64_t> find_conversation(store::LogDb& db, std::string id) {
  if (id.empty()) {
    store::TurnQuery newest;
    newest.limit = 1;
    auto latest = db.turns(newest);
    auto* rows = std::get_if<std::vector<store::TurnRow>>(&latest);
    if (!rows || rows->empty()) return std::nullopt;
    return rows->front().conversation;
  }
  std::string n = id[0] == '#' ? id.substr(1) : id;
  if (auto dot = n.find('.'); dot != std::string::npos) n.resize(dot);
  if (!n.empty() && n.size() < 18 && n.find_first_not_of("0123456789") == std::string::npos) {
    if (db.conversation(std::stoll(n))) return std::stoll(n);
  }
  return db.conversation_by_session(id);
}

acp::Update make_update(acp::Update::Kind kind, std::string text = {}) {
  acp::Update u;
  u.kind = kind;
  u.text = std::move(text);
  return u;
}

// Draws one logged turn with talk's renderer: the prompt, then what the agent sent, in the order
// talk shows each kind (thoughts, plan, tool calls, permission questions, the answer, the end).
void render_turn(talk::Renderer& r, const store::TurnRow& row) {
  const store::TurnRecord& t = row.record;
  r.begin_turn();
  r.dim("#" + std::to_string(row.conversation) + "." + std::to_string(row.seq) + "  " + local_time(t.started_ms) + "  " +
        seconds_text(t.ended_ms - t.started_ms) + (t.restarts ? "  " + std::to_string(t.restarts) + " restart(s)" : ""));
  r.info("> " + t.prompt);
  if (!t.thoughts.empty()) r.update(make_update(acp::Update::Kind::agent_thought, t.thoughts));
  json plan = safe_column(t.plan);
  if (plan.is_array() && !plan.empty()) {
    acp::Update u = make_update(acp::Update::Kind::plan);
    for (const auto& e : plan)
      if (e.is_object()) u.plan.push_back({e.value("content", ""), e.value("priority", ""), e.value("status", "")});
    r.update(u);
  }
  json tools = safe_column(t.tool_calls);
  for (const auto& tc : tools.is_array() ? tools : json::array()) {
    if (!tc.is_object()) continue;
    acp::Update u = make_update(acp::Update::Kind::tool_call);
    u.tool = {tc.value("id", ""), tc.value("title", ""), tc.value("kind", ""), tc.value("status", ""), {}};
    r.update(u);
    if (tc.contains("diff") && tc["diff"].is_array())
      for (const auto& d : tc["diff"])
        if (d.is_string()) r.dim("    " + terminal_line(d.get<std::string>()));
  }
  json perms = safe_column(t.permissions);
  for (const auto& p : perms.is_array() ? perms : json::array()) {
    if (!p.is_object()) continue;
    acp::PermissionRequest q;
    q.answered = true;
    q.tool.id = p.value("toolCallId", "");
    q.tool.title = p.value("title", "");
    if (p.contains("answer") && p["answer"].is_string() && p["answer"] != "cancelled")
      q.chosen = acp::PermissionOption{"", p["answer"].get<std::string>(), ""};
    r.permission(q);
  }
  if (!t.answer.empty()) r.update(make_update(acp::Update::Kind::agent_message, t.answer));
  json usage = safe_column(t.usage);
  if (usage.is_object()) {
    acp::Update u = make_update(acp::Update::Kind::usage);
    u.usage.used = usage.value("used", std::int64_t{0});
    u.usage.size = usage.value("size", std::int64_t{0});
    if (usage.contains("cost") && usage["cost"].is_number()) u.usage.cost = usage["cost"].get<double>();
    u.usage.currency = usage.value("currency", "");
    r.update(u);
  }
  acp::TurnEvent end;
  end.kind = t.stop_reason.empty() ? acp::TurnEvent::Kind::failed : acp::TurnEvent::Kind::completed;
  end.stop_reason = t.stop_reason;
  end.error = safe_column(t.error);
  if (!end.error.is_object()) end.error = {{"code", "internal"}, {"message", "the turn failed"}};
  r.end_turn(end);
}

int show_conversation(store::LogDb& db, const LogOptions& o) {
  auto id = find_conversation(db, o.show_id);
  if (!id) {
    if (o.show_id.empty()) {
      if (!o.json) error_line("no turns logged yet");
      return kExitOk;
    }
    error_line("log show " + o.show_id + ": no such conversation in the log (`tether log` lists them)");
    return kExitDataErr;
  }
  auto rows = db.conversation_turns(*id);
  auto c = db.conversation(*id);
  if (o.json) {
    ordered_json turns = ordered_json::array();
    for (const auto& row : rows) turns.push_back(turn_json(row));
    ordered_json conv = {{"id", *id},         {"agent", c ? c->agent : ""}, {"sessionId", c ? c->session_id : ""},
                         {"cwd", c ? c->cwd : ""}, {"title", c ? c->title : ""}, {"createdMs", c ? c->created_ms : 0},
                         {"updatedMs", c ? c->updated_ms : 0}, {"turns", turns}};
    return print_json_line(conv) ? kExitOk : kExitIoErr;
  }
  talk::RenderStyle style;
  style.color = use_color("auto", STDOUT_FILENO);
  style.sanitize = style.sanitize_err = true;  // everything here is the agent's, whatever stdout is
  style.shared = true;                         // one stream: lines kept apart
  talk::Renderer r(style);
  if (c) r.dim("conversation " + std::to_string(c->id) + ": " + terminal_line(c->agent) + " in " + terminal_line(c->cwd) +
               ", session " + terminal_line(c->session_id));
  for (const auto& row : rows) {
    render_turn(r, row);
    std::string text;
    for (auto& w : r.take()) text += w.text;
    if (!write_stdout(text)) return errno == EPIPE ? kExitOk : kExitIoErr;
  }
  return kExitOk;
}

}  // namespace

std::optional<std::int64_t> parse_since(std::string_view s, std::int64_t now) {
  if (s.empty()) return std::nullopt;
  char unit = s.back();
  std::string digits(s.substr(0, s.size() - 1));
  if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 10) {
    std::int64_t n = std::stoll(digits);
    std::int64_t per = unit == 's' ? 1000 : unit == 'm' ? 60000 : unit == 'h' ? 3600000 : unit == 'd' ? 86400000
                     : unit == 'w' ? 7 * std::int64_t{86400000} : 0;
    if (per) return now - n * per;
  }
  std::string text(s);
  bool utc = !text.empty() && text.back() == 'Z';
  if (utc) text.pop_back();
  struct tm tm {};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%d", &tm);
  if (!end) return std::nullopt;
  if (*end == 'T' || *end == ' ') {
    const char* rest = ::strptime(end + 1, "%H:%M:%S", &tm);
    if (!rest) rest = ::strptime(end + 1, "%H:%M", &tm);
    end = rest;
  }
  if (!end || *end) return std::nullopt;
  tm.tm_isdst = -1;
  time_t t = utc ? ::timegm(&tm) : ::mktime(&tm);
  if (t == static_cast<time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t) * 1000;
}

int run_log(LogOptions& o) {
  if (auto err = finish_options(o.common)) {  // the config's `log = "PATH"`
    error_line(err->message);
    return err->exit_code;
  }
  auto path = log_path(o.common);
  if (o.form == LogOptions::Form::path) {
    std::string p = path.value_or("");
    bool ok = o.json ? print_json_line(ordered_json{{"path", path ? json(p) : json(nullptr)}})
                     : write_stdout((path ? p : "(the log is off: --no-log, or log = false in the config)") + "\n");
    return ok ? kExitOk : kExitIoErr;
  }
  std::int64_t since = 0;
  if (!o.since.empty()) {
    auto parsed = parse_since(o.since, now_ms());
    if (!parsed) {
      error_line("--since " + o.since + ": expected a time back (30m, 2h, 3d, 1w) or a date (2026-12-01, 2026-12-01T10:00)");
      return kExitUsage;
    }
    since = *parsed;
  }
  if (!o.cwd.empty()) {
    char resolved[PATH_MAX];
    if (::realpath(o.cwd.c_str(), resolved)) o.cwd = resolved;
  }
  struct stat st;
  if (!path || ::stat(path->c_str(), &st) != 0 || st.st_size == 0) {
    if (!o.json) error_line("no turns logged yet" + (path ? " (" + *path + ")" : std::string(" (the log is off)")));
    return kExitOk;
  }
  auto opened = store::LogDb::open(*path);
  if (auto* err = std::get_if<std::string>(&opened)) {
    error_line("cannot open the turn log " + *err);
    return kExitIoErr;
  }
  auto& db = *std::get<std::unique_ptr<store::LogDb>>(opened);
  if (o.form == LogOptions::Form::show) return show_conversation(db, o);
  return list_turns(db, o, since);
}

std::function<int()> setup_log(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<LogOptions>();
  auto* sub = app.add_subcommand("log", "Show and search the log of past turns (talk, prompt, batch)");
  sub->footer(
      "Every turn of talk, prompt and batch is logged to an SQLite database (see `tether log path`;\n"
      "--log FILE or --no-log on those commands). `tether log` lists the latest turns, oldest first;\n"
      "-q WORDS finds turns whose prompt, answer or title has all the words (word* for a prefix).\n"
      "`tether log show [ID]` shows a whole conversation (ID: its number, #ID in the list, or an ACP\n"
      "session id; default: the latest). --json: one object per line (show: one object).");
  expects(sub->add_option("-n,--limit", o->limit, "How many turns (0: all)"), count_value(0, 1000000000))->capture_default_str();
  sub->add_option("--agent", o->agent, "Only turns of this agent (as `tether log` names it: demo, claude, ...)");
  expects(sub->add_option("--cwd", o->cwd, "Only turns in this directory"), dir_value());
  sub->add_option("--since", o->since, "Only turns since: 30m, 2h, 3d, 1w, or a date 2026-12-01[T10:00][Z]");
  sub->add_option("-q,--query", o->search, "Full-text search: turns with all these words")->expected(1, -1);
  auto add_shared = [o](CLI::App* cmd) {
    cmd->add_flag("--json", o->json, "Print JSON (keys in man tether, LOG)");
    expects(cmd->add_option("--log", o->common.log, "The log database to read (default: $XDG_STATE_HOME/tether/logs.db)"),
            file_value());
    expects(cmd->add_option("--config", o->common.config, "Config file (default: $XDG_CONFIG_HOME/tether/config.toml)"),
            file_value());
  };
  add_shared(sub);
  auto* show = sub->add_subcommand("show", "Show a whole conversation, as talk showed it");
  show->add_option("ID", o->show_id, "Conversation number or ACP session id (default: the latest)");
  add_shared(show);
  show->callback([o] { o->form = LogOptions::Form::show; });
  auto* path = sub->add_subcommand("path", "Print where the log database is");
  add_shared(path);
  path->callback([o] { o->form = LogOptions::Form::path; });
  sub->require_subcommand(0, 1);
  return [o, bridge_argv] {
    o->common.bridge = {"-"};  // not used: keeps finish_options from looking for a bridge
    return run_log(*o);
  };
}

}  // namespace tether::cli
