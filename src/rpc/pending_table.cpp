#include "rpc/pending_table.h"

#include <algorithm>

namespace tether::rpc {

std::int64_t PendingTable::add(Completion done, bool* was_closed) {
  base::MutexLock lock(mu_);
  std::int64_t id = next_id_++;
  if (was_closed) *was_closed = closed_;
  if (!closed_) {
    waiting_.emplace(id, std::move(done));
    return id;
  }
  Reply reply = close_reply_;
  reply.id = id;
  lock.unlock();
  done(std::move(reply));  // completions never run under our lock
  return id;
}

bool PendingTable::complete(std::int64_t id, Reply reply) {
  Completion done;
  {
    base::MutexLock lock(mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return false;
    done = std::move(it->second);
    waiting_.erase(it);
  }
  reply.id = id;
  done(std::move(reply));
  return true;
}

void PendingTable::close(const Reply& reply) {
  std::unordered_map<std::int64_t, Completion> orphans;
  {
    base::MutexLock lock(mu_);
    if (closed_) return;
    closed_ = true;
    close_reply_ = reply;
    orphans.swap(waiting_);
  }
  // Ids ascending, so that waiters fail in the order they asked.
  std::vector<std::pair<std::int64_t, Completion*>> order;
  for (auto& [id, done] : orphans) order.emplace_back(id, &done);
  std::sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& [id, done] : order) {
    Reply r = reply;
    r.id = id;
    (*done)(std::move(r));
  }
}

bool PendingTable::closed() const {
  base::MutexLock lock(mu_);
  return closed_;
}

std::size_t PendingTable::size() const {
  base::MutexLock lock(mu_);
  return waiting_.size();
}

}  // namespace tether::rpc
