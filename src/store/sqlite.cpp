// See sqlite.h.
#include "store/sqlite.h"

#include <cstdint>
#include <cstring>

namespace tether::store {

Statement::Statement(sqlite3* db, std::string_view sql) {
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
}

Statement& Statement::bind(std::string_view text) {
  if (stmt_) sqlite3_bind_text64(stmt_, next_, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  ++next_;
  return *this;
}

Statement& Statement::bind_ref(const std::string& text) {
  // Bound with a length, text is not known to SQLite to end with a NUL, and the first reader that
  // asks for it so (FTS5 asks for every column it indexes) gets a copy made to add one: a second
  // answer in memory. Length -1 says that it ends with one (std::string's does), unless a NUL
  // inside would cut it short there, and for short text, where the copy costs nothing.
  constexpr std::size_t kShort = 4096;
  bool nul_ended = text.size() >= kShort && text.size() < INT32_MAX && !std::memchr(text.data(), 0, text.size());
  if (stmt_ && nul_ended) sqlite3_bind_text(stmt_, next_, text.c_str(), -1, SQLITE_STATIC);
  else if (stmt_) sqlite3_bind_text64(stmt_, next_, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
  ++next_;
  return *this;
}

Statement& Statement::bind(std::int64_t value) {
  if (stmt_) sqlite3_bind_int64(stmt_, next_, value);
  ++next_;
  return *this;
}

Statement::Step Statement::step() {
  if (!stmt_) return Step::error;
  switch (sqlite3_step(stmt_)) {
    case SQLITE_ROW: return Step::row;
    case SQLITE_DONE: return Step::done;
    default: return Step::error;
  }
}

void Statement::reset() {
  if (stmt_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  next_ = 1;
}

std::string Statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

bool exec(sqlite3* db, const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }

}  // namespace tether::store
