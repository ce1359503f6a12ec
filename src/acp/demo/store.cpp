// The demo agent's store of session histories as a whole (see agent.h): session/list answers
// from it (newest first, by the last turn; a cwd filter; pages of kListPage with an opaque
// cursor, as the ACP schema has it), and it is kept bounded (kKeepSessions, kKeepDays): a demo
// must not fill a disk, even one that runs batches of thousands of sessions.
#include "acp/demo/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "base/private_dir.h"
#include "rpc/message.h"

namespace tether::acp::demo {
namespace {

constexpr std::size_t kMaxTitle = 80;  // bytes of the first prompt that title a session

struct Stored {
  std::string id;
  timespec mtime{};
};

// The histories in the directory, newest first (ties: by id, so that pages are stable).
std::vector<Stored> stored_sessions(int dirfd) {
  std::vector<Stored> out;
  int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
  if (!d) {
    if (dup >= 0) ::close(dup);
    return out;
  }
  while (auto* e = ::readdir(d)) {
    std::string name(e->d_name);
    struct stat st;
    if (!valid_session_id(name) || ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    out.push_back({std::move(name), st.st_mtim});
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const Stored& a, const Stored& b) {
    if (a.mtime.tv_sec != b.mtime.tv_sec) return a.mtime.tv_sec > b.mtime.tv_sec;
    if (a.mtime.tv_nsec != b.mtime.tv_nsec) return a.mtime.tv_nsec > b.mtime.tv_nsec;
    return a.id > b.id;
  });
  return out;
}

// The first line of a history: the first prompt and the session's cwd.
json first_entry(int dirfd, const std::string& id) {
  int fd = base::open_private_file(dirfd, id, O_RDONLY);
  if (fd < 0) return nullptr;
  std::string text;
  char buf[8192];
  // The first line holds one prompt of at most kMaxStoredAnswer bytes, escaped (6 bytes each at
  // worst), and the cwd.
  const std::size_t limit = 6 * kMaxStoredAnswer + 8192;
  for (ssize_t n; text.find('\n') == std::string::npos && text.size() < limit && (n = ::read(fd, buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  auto nl = text.find('\n');
  if (nl == std::string::npos) return nullptr;
  json entry = json::parse(std::string_view(text).substr(0, nl), nullptr, false);
  return entry.is_object() ? entry : json(nullptr);
}

std::string title_of(std::string prompt) {
  for (char& c : prompt)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (prompt.size() <= kMaxTitle) return prompt;
  std::size_t n = kMaxTitle;
  while (n > 0 && (static_cast<unsigned char>(prompt[n]) & 0xC0) == 0x80) --n;  // whole characters
  prompt.resize(n);
  return prompt + "…";
}

std::string iso_time(const timespec& t) {
  std::tm tm{};
  ::gmtime_r(&t.tv_sec, &tm);
  char buf[48];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(t.tv_nsec / 1000000));  // histories change within a second
  return std::string(buf) + ms;
}

}  // namespace

// session/list {cwd?, cursor?}: the cursor is the position of the next page, as text.
void DemoAgent::on_list(const json& id, const json& params) {
  std::string cwd = rpc::string_of(params, "cwd");
  std::size_t start = 0;
  if (params.is_object() && params.contains("cursor") && !params["cursor"].is_null()) {
    auto n = params["cursor"].is_string() ? number(params["cursor"].get<std::string>()) : std::nullopt;
    if (!n) {
      respond_error(id, -32602, "Invalid params: cursor is not one this agent gave");
      return;
    }
    start = static_cast<std::size_t>(*n);
  }
  json sessions = json::array();
  std::size_t seen = 0;
  bool more = false;
  base::UniqueFd dir = open_state_dir();
  for (const auto& st : dir ? stored_sessions(dir.get()) : std::vector<Stored>{}) {
    json first = first_entry(dir.get(), st.id);
    if (!first.is_object()) continue;
    std::string its_cwd = rpc::string_of(first, "cwd");
    if (!cwd.empty() && its_cwd != cwd) continue;
    if (seen++ < start) continue;
    if (sessions.size() == kListPage) {
      more = true;
      break;
    }
    sessions.push_back({{"sessionId", st.id}, {"cwd", its_cwd}, {"title", title_of(rpc::string_of(first, "u"))},
                        {"updatedAt", iso_time(st.mtime)}});
  }
  json answer = {{"sessions", std::move(sessions)}};
  if (more) answer["nextCursor"] = std::to_string(start + kListPage);
  respond(id, answer);
}

// Removes the histories past the newest kKeepSessions, and those whose last turn is older than
// kKeepDays; never one of a session this process has open. (One open in another process was
// touched when it was loaded or resumed and at each turn: it is among the newest.)
void DemoAgent::prune_state_dir(int dirfd) {
  const time_t too_old = ::time(nullptr) - time_t{kKeepDays} * 24 * 3600;
  std::size_t kept = 0;
  for (const auto& st : stored_sessions(dirfd)) {
    bool ours = sessions_.count(st.id) > 0;
    if (ours || (kept < kKeepSessions && st.mtime.tv_sec >= too_old)) {
      ++kept;
      continue;
    }
    ::unlinkat(dirfd, st.id.c_str(), 0);
  }
}

}  // namespace tether::acp::demo
