// Talk (talk_private.h): continued sessions. The line that says which session continues (talk
// -c, --session, -s NAME, and /load), /sessions (the turn log's conversations with this agent in
// this directory, and the agent's own session/list when it offers one, merged by id, newest
// first), and /load ID|N (the running talk switches to that session through
// AcpSession::load_session: the path that brings a session back after a restart).
//
// A continued session's history, which session/load replays, is not drawn again: one line says
// which session continues and how many prompts it had. The earlier run's scrollback, or `tether
// log show`, has the text; redrawing a long conversation would bury the prompt under it.
#include <time.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "cli/talk_private.h"
#include "cli/terminal_text.h"
#include "store/log_db.h"

namespace tether::cli {

using namespace talk_detail;

namespace {

constexpr std::size_t kShownSessions = 20;    // /sessions lists the newest this many
constexpr std::size_t kMaxAgentSessions = 200;  // of the agent's session/list answer, at most
constexpr std::size_t kMaxIdBytes = 200;

struct Listed {
  std::string id, title;
  std::int64_t updated_ms = 0;
  int turns = -1;  // -1: unknown (only the agent knows it)
};

std::unique_ptr<store::LogDb> open_log_quietly(const CommonOptions& o) {
  auto path = log_path(o);
  if (!path) return nullptr;
  auto db = store::LogDb::open(*path);
  auto* ok = std::get_if<std::unique_ptr<store::LogDb>>(&db);
  return ok ? std::move(*ok) : nullptr;
}

// An ISO 8601 time in UTC ("2026-12-06T20:15:00.250Z"; offsets ignored) in ms; 0 when it is
// not one.
std::int64_t iso_ms(const std::string& s) {
  std::tm tm{};
  const char* end = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) return 0;
  std::int64_t ms = 0;
  if (*end == '.')  // milliseconds; finer digits are dropped
    for (int i = 0, scale = 100; i < 3 && std::isdigit(static_cast<unsigned char>(end[1 + i])); ++i, scale /= 10)
      ms += (end[1 + i] - '0') * scale;
  return static_cast<std::int64_t>(::timegm(&tm)) * 1000 + ms;
}

std::string local_time(std::int64_t ms) {
  if (ms <= 0) return "                ";
  time_t t = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() < 6 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

// How many prompts the continued session had: what session/load replayed, else what the turn
// log counted (session/resume replays nothing).
static std::string continued_text(const acp::SessionState& st, store::LogDb* log) {
  int turns = st.replayed_turns;
  if (turns == 0 && log)
    if (auto conv = log->conversation_by_session(st.session_id))
      if (auto c = log->conversation(*conv)) turns = c->turns;
  std::string s = "continued session " + terminal_line(st.session_id);
  if (turns > 0) s += " (" + std::to_string(turns) + " earlier prompt" + (turns == 1 ? "" : "s") + ")";
  if (!st.title.empty()) s += ": " + terminal_line(st.title);
  return s;
}

void Talk::greet_continued() {
  const auto& st = session_->state();
  const ContinuePlan& plan = o_.continuing;
  if (!plan.bind_name.empty()) {
    bind_session_name(plan, o_.common, st.session_id);
    if (!o_.common.quiet) renderer_.dim("new session " + terminal_line(st.session_id) + ", named " + terminal_line(plan.bind_name));
  } else if (!plan.session_id.empty() && !o_.common.quiet) {
    auto log = open_log_quietly(o_.common);
    renderer_.dim(continued_text(st, log.get()));
  }
  flush();
}

// /sessions: numbered, so that /load N picks one.
void Talk::list_sessions() {
  std::map<std::string, Listed> all;
  if (auto log = open_log_quietly(o_.common)) {
    for (auto& c : log->conversations(agent_label(o_.common), o_.common.cwd, static_cast<int>(kShownSessions)))
      all[c.session_id] = {c.session_id, c.title, c.updated_ms, c.turns};
  }
  const auto& st = session_->state();
  if (st.can_list && !connected_mode() && !bridge_down()) {
    std::string why;
    auto r = ask_server("session/list", kServerStatusWait, why, {{"cwd", o_.common.cwd}});
    const nlohmann::json* list = r && r->is_object() ? rpc::member(*r, "sessions") : nullptr;
    if (!r) renderer_.note("the agent did not list its sessions: " + why);
    std::size_t n = 0;
    for (const auto& s : list && list->is_array() ? *list : nlohmann::json::array()) {
      std::string id = rpc::string_of(s, "sessionId");
      if (id.empty() || id.size() > kMaxIdBytes || ++n > kMaxAgentSessions) continue;
      Listed& e = all[id];
      e.id = id;
      if (e.title.empty()) e.title = rpc::string_of(s, "title");
      e.updated_ms = std::max(e.updated_ms, iso_ms(rpc::string_of(s, "updatedAt")));
    }
  }
  std::vector<Listed> sorted;
  for (auto& [id, e] : all) sorted.push_back(std::move(e));
  std::sort(sorted.begin(), sorted.end(), [](const Listed& a, const Listed& b) { return a.updated_ms > b.updated_ms; });
  if (sorted.size() > kShownSessions) sorted.resize(kShownSessions);
  listed_sessions_.clear();
  if (sorted.empty()) {
    renderer_.dim("(no earlier conversation with this agent in " + terminal_line(o_.common.cwd) + ")");
    flush();
    return;
  }
  std::string out;
  for (const auto& e : sorted) {
    listed_sessions_.push_back(e.id);
    std::string n = std::to_string(listed_sessions_.size());
    out += (e.id == st.session_id ? "* " : "  ") + std::string(3 - std::min<std::size_t>(3, n.size()), ' ') + n + "  " +
           local_time(e.updated_ms) + "  " + terminal_line(e.id) + "  " + terminal_line(e.title.empty() ? "(untitled)" : e.title);
    if (e.turns > 0) out += " (" + std::to_string(e.turns) + (e.turns == 1 ? " prompt)" : " prompts)");
    out += "\n";
  }
  out += "/load N (or /load ID) continues one; * marks this session.";
  renderer_.info(out);
  flush();
}

// /load ID|N: a number from the last /sessions, else the id as typed.
void Talk::load_session(const std::string& which) {
  if (bridge_down()) return;
  std::string id = which;
  if (all_digits(which)) {
    // A number is always one of the list: out of its range it is a typo, not an id to send the
    // agent after the current session was already left.
    std::size_t n = which.size() <= 4 ? std::stoul(which) : 0;
    if (n < 1 || n > listed_sessions_.size()) {
      renderer_.error(listed_sessions_.empty() ? "no session " + which + ": list them with /sessions first"
                                               : "no session " + which + " in the last /sessions (1 to " +
                                                     std::to_string(listed_sessions_.size()) + ")");
      flush();
      return;
    }
    id = listed_sessions_[n - 1];
  }
  const std::string before = session_->state().session_id;
  if (id == before) {
    renderer_.dim("(this is session " + terminal_line(id) + " already)");
    flush();
    return;
  }
  auto failed = session_->load_session(id, base::Deadline::after(kRestartWait), sig_.get());
  seen_loaded_ = session_->state().sessions_loaded;
  if (!failed) {
    auto log = open_log_quietly(o_.common);
    renderer_.note(continued_text(session_->state(), log.get()));
    flush();
    return;
  }
  renderer_.error(acp::message_with_tail(failed->error));
  if (!interactive_) last_status_ = acp::worse_exit(last_status_, acp::exit_status(*failed));
  flush();
  // Refused before anything changed: the session goes on. Refused by the agent: the old session
  // was left already, so a new one takes its place (said by new_session()).
  if (session_->state().session_id != before) new_session();
}

}  // namespace tether::cli
