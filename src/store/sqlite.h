// Small RAII wrappers over SQLite's C API, as the turn log uses it: a prepared statement that is
// finalized with its owner, binds by position and reads columns by index, and a transaction that
// rolls back unless committed. No ORM and no exceptions: step() says row, done or error, and the
// connection's sqlite3_errmsg says why. A statement can be kept and run again (reset()): the turn
// log's writer prepares its inserts once per connection, not once per turn.
//
// Thread contract: thread-bound, as the connection they belong to.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace tether::store {

class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql);
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  // Binds parameters 1, 2, ... in order; text is copied (SQLITE_TRANSIENT).
  Statement& bind(std::string_view text);
  // Binds text without copying it (SQLITE_STATIC): it must stay alive and unchanged until the
  // next reset(). A turn's answer can be megabytes; a copy per insert doubles the peak.
  Statement& bind_ref(const std::string& text);
  Statement& bind(std::int64_t value);
  Statement& bind(int value) { return bind(static_cast<std::int64_t>(value)); }

  enum class Step { row, done, error };
  Step step();
  // Steps once more and says whether the statement ran to its end without error.
  bool run() { return step() == Step::done; }

  // Ready to run again: the last run's state and every binding are dropped, the next bind() is
  // parameter 1. Also ends a run early (a statement left mid-run would hold its transaction).
  void reset();

  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string text(int column) const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int next_ = 1;
};

// Runs SQL that returns no rows (one or more statements). False on error.
bool exec(sqlite3* db, const char* sql);

// BEGIN IMMEDIATE (the write lock at once, so a busy database waits in busy_timeout here rather
// than failing at the first write), and ROLLBACK unless commit() succeeded.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db), began_(exec(db, "BEGIN IMMEDIATE")) {}
  ~Transaction() {
    if (began_ && !committed_) exec(db_, "ROLLBACK");
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  bool began() const { return began_; }
  bool commit() { return committed_ = began_ && exec(db_, "COMMIT"); }

 private:
  sqlite3* db_;
  bool began_;
  bool committed_ = false;
};

}  // namespace tether::store
