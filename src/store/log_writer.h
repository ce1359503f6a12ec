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
// Thread contract: thread-safe (add, close and warning from any thread); one thread of its own.
#pragma once

#include <condition_variable>
#include <deque>
#include <optional>
#include <string>
#include <thread>

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

 private:
  void run();

  const std::string path_;
  base::Mutex mu_;
  std::condition_variable cv_;
  std::deque<TurnRecord> queue_ GUARDED_BY(mu_);
  bool closing_ GUARDED_BY(mu_) = false;
  std::optional<std::string> warning_ GUARDED_BY(mu_);
  std::thread thread_;  // started last, joined by close()
};

}  // namespace tether::store
