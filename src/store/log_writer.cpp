// See log_writer.h.
#include "store/log_writer.h"

#include <pthread.h>

namespace tether::store {

LogWriter::LogWriter(std::string path) : path_(std::move(path)) {
  thread_ = std::thread([this] { run(); });
}

LogWriter::~LogWriter() { close(); }

void LogWriter::add(TurnRecord turn) {
  bool wake = false;
  {
    base::MutexLock lock(mu_);
    if (closing_) return;
    // The writer blocks only on an empty queue; a non-empty one is seen before it waits again.
    wake = queue_.empty();
    queue_.push_back(std::move(turn));
  }
  if (wake) cv_.notify_one();
}

void LogWriter::close() {
  {
    base::MutexLock lock(mu_);
    closing_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::string> LogWriter::warning() {
  base::MutexLock lock(mu_);
  return warning_;
}

std::uint64_t LogWriter::batches() {
  base::MutexLock lock(mu_);
  return batches_;
}

void LogWriter::run() {
  ::pthread_setname_np(::pthread_self(), "tether-log");
  std::unique_ptr<LogDb> db;
  std::optional<std::string> failure;
  auto opened = LogDb::open(path_);
  if (auto* err = std::get_if<std::string>(&opened)) failure = "cannot open the turn log " + *err;
  else db = std::move(std::get<std::unique_ptr<LogDb>>(opened));
  std::vector<TurnRecord> batch;
  for (;;) {
    {
      base::MutexLock lock(mu_);
      if (failure && !warning_) warning_ = failure;
      lock.wait(cv_, [&]() REQUIRES(mu_) { return closing_ || !queue_.empty(); });
      if (queue_.empty()) break;  // closing, and all stored
      batch.swap(queue_);         // all of it: one transaction however many turns queued meanwhile
      ++batches_;
    }
    if (db) {  // else the open failed: the turns are dropped, the warning says so
      auto err = db->insert_turns(batch);
      // All or none: a batch the database refused is stored turn by turn, so that a turn it cannot
      // take costs that turn only.
      if (err && batch.size() > 1) {
        err.reset();
        for (const TurnRecord& turn : batch) {
          if (auto one = db->insert_turns({&turn, 1}); one && !err) err = one;
        }
      }
      if (err && !failure) failure = "cannot write to the turn log " + path_ + ": " + *err;
    }
    batch.clear();
  }
  base::MutexLock lock(mu_);
  if (failure && !warning_) warning_ = failure;
}

}  // namespace tether::store
