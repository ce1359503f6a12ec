// See sqlite.h.
#include "store/sqlite.h"

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

std::string Statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

bool exec(sqlite3* db, const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }

}  // namespace tether::store
