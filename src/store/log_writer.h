// The turn log's writer: a thread that owns the process's one LogDb connection and stores the
// turns the front-ends hand it, so that neither opening the database nor waiting for another
// process's write ever delays a turn's output.
//
// The database is opened on the writer thread (the first frame to the agent does not wait for
// it). close() stores every turn queued before it, then closes the database: a front-end calls it
// before the process exits, on the signal paths too, so a logged turn is durable by then. A log
// that cannot be opened or written costs the turns that were to go there, never a turn's result:
// the first failure is kept as a sentence (warning()) and later turns are dropped quietly.
//
// Group commit: the writer takes everything queued when it wakes and stores it in one
// transaction (one WAL commit, whatever the number of turns), and the producer wakes it only when
// the queue goes from empty to non-empty: while it writes, turns queue up without a wake-up each.
// There is no lingering to gather more: a turn is written as soon as the writer is free, so a
// process killed right after a turn loses at most the turns the writer had not reached yet (one,
// unless the database was held by another process).
//
// Thread contract: thread-safe (add, close and warning from any thread); one thread of its own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "store/log_db.h"

namespace tether::store {

class LogWriter {
 public:
  explicit LogWriter(std::string path);
  ~LogWriter();  // close()
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Queues a turn; never blocks on the database. Ignored after close().
  void add(TurnRecord turn);
  // Stores what is queued, closes the database and ends the thread. Idempotent.
  void close();
  // The first failure ("cannot open …", "cannot write …"), once close() returned; nothing when
  // every turn was stored.
  std::optional<std::string> warning();
  const std::string& path() const { return path_; }
  // How many times the writer took the queue so far: each time all of it, stored in one
  // transaction.
  std::uint64_t batches();

 private:
  void run();

  const std::string path_;
  base::Mutex mu_;
  std::condition_variable cv_;
  std::vector<TurnRecord> queue_ GUARDED_BY(mu_);  // the writer waits only when it is empty
  std::uint64_t batches_ GUARDED_BY(mu_) = 0;
  bool closing_ GUARDED_BY(mu_) = false;
  std::optional<std::string> warning_ GUARDED_BY(mu_);
  std::thread thread_;  // started last, joined by close()
};

}  // namespace tether::store
