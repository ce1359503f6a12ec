// Unit tests for rpc::PendingTable: every id completes exactly once, whoever races to complete it.
#include "rpc/pending_table.h"

#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

using tether::rpc::json;
using tether::rpc::PendingTable;
using tether::rpc::Reply;

namespace {

Reply result(json value) {
  Reply r;
  r.status = Reply::Status::result;
  r.value = std::move(value);
  return r;
}

Reply closed_reply() {
  Reply r;
  r.status = Reply::Status::closed;
  r.value = {{"code", "bridge_exited"}, {"message", "the bridge exited with status 1"}};
  return r;
}

}  // namespace

TEST_SUITE("rpc::PendingTable") {

TEST_CASE("ids are fresh and each completes exactly once, with its own reply") {
  PendingTable table;
  std::vector<Reply> got;
  auto a = table.add([&](Reply r) { got.push_back(std::move(r)); });
  auto b = table.add([&](Reply r) { got.push_back(std::move(r)); });
  CHECK(a != b);
  CHECK(table.size() == 2);

  CHECK(table.complete(b, result({{"x", 2}})));
  CHECK_FALSE(table.complete(b, result(3)));  // already answered
  CHECK(table.size() == 1);
  CHECK(table.complete(a, result("first")));
  CHECK(table.size() == 0);

  REQUIRE(got.size() == 2);
  CHECK(got[0].id == b);
  CHECK(got[0].ok());
  CHECK(got[0].value == json{{"x", 2}});
  CHECK(got[1].id == a);
  CHECK(got[1].value == "first");
}

TEST_CASE("the reply's id is set by the table, whatever the caller passed") {
  PendingTable table;
  std::int64_t seen = -1;
  auto id = table.add([&](Reply r) { seen = r.id; });
  Reply r = result(1);
  r.id = 12345;
  REQUIRE(table.complete(id, r));
  CHECK(seen == id);
}

TEST_CASE("an unknown id returns false and completes nothing") {
  PendingTable table;
  int calls = 0;
  auto id = table.add([&](Reply) { ++calls; });
  CHECK_FALSE(table.complete(id + 1000, result(1)));
  CHECK_FALSE(table.complete(0, result(1)));
  CHECK_FALSE(table.complete(-1, result(1)));
  CHECK(calls == 0);
  CHECK(table.size() == 1);
}

TEST_CASE("close() fails every waiter, in id order, with the close reply") {
  PendingTable table;
  std::vector<std::int64_t> order;
  std::vector<Reply> replies;
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(table.add([&](Reply r) {
      order.push_back(r.id);
      replies.push_back(std::move(r));
    }));
  table.close(closed_reply());
  CHECK(table.closed());
  CHECK(table.size() == 0);
  CHECK(order == ids);
  for (const auto& r : replies) {
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value == closed_reply().value);
  }
  CHECK_FALSE(table.complete(ids[3], result(1)));  // closed ids are gone
  CHECK(order.size() == 20);
}

TEST_CASE("add() after close() completes at once with the close reply and its id") {
  PendingTable table;
  table.close(closed_reply());
  int calls = 0;
  Reply got;
  auto id = table.add([&](Reply r) {
    ++calls;
    got = std::move(r);
  });
  CHECK(calls == 1);  // before add() returned, on this thread
  CHECK(got.status == Reply::Status::closed);
  CHECK(got.value == closed_reply().value);
  CHECK(got.id == id);
  CHECK(id != 0);
  CHECK_FALSE(table.complete(id, result(1)));
  CHECK(calls == 1);
  CHECK(table.size() == 0);

  auto id2 = table.add([&](Reply r) { got = std::move(r); });
  CHECK(id2 != id);
  CHECK(got.id == id2);
}

TEST_CASE("close() is idempotent: the first reply is kept") {
  PendingTable table;
  Reply first = closed_reply();
  table.close(first);
  Reply second;
  second.status = Reply::Status::cancelled;
  second.value = "second";
  table.close(second);
  Reply got;
  table.add([&](Reply r) { got = std::move(r); });
  CHECK(got.status == Reply::Status::closed);
  CHECK(got.value == first.value);
}

TEST_CASE("completions run without the table's lock held") {
  // A completion that calls back into the table would deadlock if it ran under the lock.
  PendingTable table;
  std::size_t size_seen = 99;
  auto id = table.add([&](Reply) { size_seen = table.size(); });
  table.add([&](Reply) { size_seen = table.size() + 100; });
  REQUIRE(table.complete(id, result(1)));
  CHECK(size_seen == 1);
  table.close(closed_reply());
  CHECK(size_seen == 100);
  bool closed_seen = false;
  table.add([&](Reply) { closed_seen = table.closed(); });
  CHECK(closed_seen);
}

TEST_CASE("complete() racing close() from several threads: exactly one completion per id") {
  constexpr int kIterations = 300;
  constexpr int kIds = 64;
  constexpr int kCompleters = 3;
  for (int iter = 0; iter < kIterations; ++iter) {
    CAPTURE(iter);
    PendingTable table;
    auto counts = std::make_unique<std::atomic<int>[]>(kIds);
    auto closed = std::make_unique<std::atomic<int>[]>(kIds);
    std::vector<std::int64_t> ids;
    std::int64_t first = 0;
    for (int i = 0; i < kIds; ++i) {
      auto id = table.add([&, i](Reply r) {
        counts[i].fetch_add(1);
        if (r.status == Reply::Status::closed) closed[i].fetch_add(1);
      });
      if (i == 0) first = id;
      REQUIRE(id == first + i);
      ids.push_back(id);
    }
    std::latch go(kCompleters + 1);  // all threads start together, without spinning
    std::atomic<int> completed_true{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kCompleters; ++t) {
      threads.emplace_back([&, t] {
        go.arrive_and_wait();
        for (int k = 0; k < kIds; ++k) {
          int i = (t % 2 == 0) ? k : kIds - 1 - k;  // some threads go forwards, some backwards
          if (table.complete(ids[static_cast<std::size_t>(i)], result(t))) completed_true.fetch_add(1);
        }
      });
    }
    threads.emplace_back([&] {
      go.arrive_and_wait();
      table.close(closed_reply());
    });
    for (auto& th : threads) th.join();

    int closed_total = 0;
    for (int i = 0; i < kIds; ++i) {
      CAPTURE(i);
      REQUIRE(counts[i].load() == 1);
      closed_total += closed[i].load();
    }
    CHECK(completed_true.load() + closed_total == kIds);
    CHECK(table.size() == 0);
    CHECK(table.closed());
  }
}

TEST_CASE("add() racing close(): every completion runs exactly once") {
  constexpr int kIterations = 200;
  constexpr int kAdds = 50;
  for (int iter = 0; iter < kIterations; ++iter) {
    CAPTURE(iter);
    PendingTable table;
    std::atomic<int> calls{0};
    std::latch go(3);
    std::vector<std::int64_t> ids(kAdds * 2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        go.arrive_and_wait();
        for (int k = 0; k < kAdds; ++k)
          ids[static_cast<std::size_t>(t * kAdds + k)] = table.add([&](Reply) { calls.fetch_add(1); });
      });
    }
    threads.emplace_back([&] {
      go.arrive_and_wait();
      table.close(closed_reply());
    });
    for (auto& th : threads) th.join();
    CHECK(calls.load() == kAdds * 2);  // each exactly once: none lost in the table, none doubled
    CHECK(table.size() == 0);
    for (auto id : ids) CHECK_FALSE(table.complete(id, result(1)));
    CHECK(calls.load() == kAdds * 2);
  }
}

}  // TEST_SUITE
