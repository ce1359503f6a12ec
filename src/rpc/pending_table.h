// The per-id inbox: each request we send gets an id and exactly one completion, which ends in
// exactly one way (result, JSON-RPC error, timeout, cancellation, or the connection's death).
// Whoever removes an entry from the table under its lock is the one that completes it, so racing
// completers (response vs. deadline vs. death) cannot complete an id twice.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "rpc/message.h"

namespace tether::rpc {

struct Reply {
  enum class Status { result, error, timeout, cancelled, closed };
  Status status = Status::closed;
  // result: the "result" member; error: the JSON-RPC "error" object {code, message, data?};
  // closed: tether's error object for a dead bridge ({"code":"bridge_exited", ...});
  // timeout and cancelled: null.
  json value;
  std::int64_t id = 0;  // the request id this reply completes (set by the table)

  bool ok() const { return status == Status::result; }
};

using Completion = std::function<void(Reply)>;

class PendingTable {
 public:
  // Registers a completion and returns its fresh id. A closed table completes it at once with the
  // closing reply (on the caller's thread) and still returns an id that nothing will answer;
  // `was_closed`, when given, says which of the two happened.
  std::int64_t add(Completion done, bool* was_closed = nullptr);
  // Completes `id` with `reply`; false when `id` is unknown (answered already, or never ours).
  bool complete(std::int64_t id, Reply reply);
  // Closes the table: every waiting completion ends with `reply`, and so does any later add().
  // Idempotent: only the first close's reply is kept.
  void close(const Reply& reply);
  bool closed() const;
  std::size_t size() const;

 private:
  mutable base::Mutex mu_;
  std::int64_t next_id_ GUARDED_BY(mu_) = 1;
  std::unordered_map<std::int64_t, Completion> waiting_ GUARDED_BY(mu_);
  bool closed_ GUARDED_BY(mu_) = false;
  Reply close_reply_ GUARDED_BY(mu_);
};

}  // namespace tether::rpc
