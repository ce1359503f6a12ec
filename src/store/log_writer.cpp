// See log_writer.h.
#include "store/log_writer.h"

#include <pthread.h>

namespace tether::store {

LogWriter::LogWriter(std::string path) : path_(std::move(path)) {
  thread_ = std::thread([this] { run(); });
}

LogWriter::~LogWriter() { close(); }

void LogWriter::add(TurnRecord turn) {
  {
    base::MutexLock lock(mu_);
    if (closing_) return;
    queue_.push_back(std::move(turn));
  }
  cv_.notify_one();
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

void LogWriter::run() {
  ::pthread_setname_np(::pthread_self(), "tether-log");
  std::unique_ptr<LogDb> db;
  std::optional<std::string> failure;
  auto opened = LogDb::open(path_);
  if (auto* err = std::get_if<std::string>(&opened)) failure = "cannot open the turn log " + *err;
  else db = std::move(std::get<std::unique_ptr<LogDb>>(opened));
  for (;;) {
    TurnRecord turn;
    {
      base::MutexLock lock(mu_);
      if (failure && !warning_) warning_ = failure;
      lock.wait(cv_, [&]() REQUIRES(mu_) { return closing_ || !queue_.empty(); });
      if (queue_.empty()) break;  // closing, and all stored
      turn = std::move(queue_.front());
      queue_.pop_front();
    }
    if (!db) continue;  // the open failed: the turn is dropped, the warning says so
    auto stored = db->insert_turn(turn);
    if (auto* err = std::get_if<std::string>(&stored); err && !failure)
      failure = "cannot write to the turn log " + path_ + ": " + *err;
  }
  base::MutexLock lock(mu_);
  if (failure && !warning_) warning_ = failure;
}

}  // namespace tether::store
