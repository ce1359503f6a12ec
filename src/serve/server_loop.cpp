// The server's poll loop, its timers, and shutdown: how a Server runs and how it stops.
#include "serve/server_core.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/signals.h"

namespace tether::serve {

using base::Clock;
using rpc::member;
using rpc::string_of;

ServeResult Server::run() {
  for (;;) {
    std::vector<pollfd> p;
    std::vector<std::uint64_t> who;  // client id per pollfd from index 3
    p.push_back({signals_.fd, POLLIN, 0});
    p.push_back({listener_ && accept_paused_until_.is_never() ? listener_.get() : -1, POLLIN, 0});
    bool paused = false;
    for (auto& [id, c] : clients_)
      if (!c->dead && c->unsent() > kClientHighWater) paused = true;
    reading_paused_ = paused;
    p.push_back({paused ? -1 : bridge_.events()->fd(), POLLIN, 0});
    for (auto& [id, c] : clients_) {
      if (c->dead) continue;
      // A client that does not read what it is sent is not read either (its requests would only
      // pile more output on it).
      short ev = c->unsent() > kClientHighWater ? 0 : POLLIN;
      if (c->unsent() > 0) ev |= POLLOUT;
      p.push_back({c->fd.get(), ev, 0});
      who.push_back(id);
    }
    int r = ::poll(p.data(), p.size(), next_deadline().poll_timeout_ms());
    if (r < 0 && errno != EINTR) {
      log(std::string("poll failed: ") + strerror(errno));
      return {acp::kExitSoftware, std::nullopt, 0};
    }
    if (r > 0) {
      if (p[0].revents) {
        if (int sig = signals_.take ? signals_.take() : 0; sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
          log("stopping on " + base::signal_name(sig));
          exit_signal_ = sig;
          begin_shutdown(0, nullptr);
        }
      }
      if (p[1].revents && listener_) accept_clients();
      if (p[2].revents) on_bridge_events();
      for (std::size_t i = 3; i < p.size(); ++i) {
        Client* c = client(who[i - 3]);
        if (!c || !p[i].revents) continue;
        if (p[i].revents & POLLOUT) flush(*c);
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) read_client(*c);
      }
    }
    timers();
    sweep_dead();
    if (!startup_error_.empty()) {
      finish_shutdown();
      return {startup_exit_, ServeError{startup_error_, startup_exit_}, 0};
    }
    if (shutting_down_) break;
  }
  finish_shutdown();
  return {acp::kExitOk, std::nullopt, exit_signal_};
}

void Server::finish_shutdown() {
  shutting_down_ = true;
  // The name first: no new connection, and a new server may take the name once the lock is free.
  listener_.reset();
  struct stat st;
  if (::lstat(where_.path.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(where_.path.c_str());
  for (auto& [id, c] : clients_)
    if (!is_stopper(id)) c->fd.reset();
  // The agent's open questions first (their clients are gone): an agent that waits on one would
  // not answer session/close.
  for (auto& [rid, r] : std::exchange(routed_, {})) answer_unroutable(r, "the server is stopping");
  if (close_all_sessions()) bridge_.stop(o_.closed_grace);
  else bridge_.stop();
  lock_.reset();
  // Those who asked for the stop hear of it last, when the name is free again: their
  // `tether serve --stop && tether serve` cannot find the old server still holding the name.
  // One that does not read gets a second, then is closed anyway.
  auto until = Deadline::after(std::chrono::seconds(1));
  for (auto& [cid, rid] : stoppers_) {
    Client* c = client(cid);
    if (!c) continue;
    c->out += rpc::dump(rpc::make_result(rid, json::object())) + "\n";
    while (c->unsent() > 0 && !c->dead && !until.expired()) {
      pollfd p{c->fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, until.poll_timeout_ms()) <= 0) break;
      flush(*c);
    }
  }
  clients_.clear();
}

// At shutdown: session/close for every session the agent still has open (the main one too), when
// it can close sessions, and their answers awaited (o_.close_wait at most). True when the agent has
// nothing open any more, so the bridge need not get its whole grace to exit.
bool Server::close_all_sessions() {
  if (link_ != Link::ready || !profile_.close) return false;
  std::vector<CallKey> waiting;
  for (auto& [id, s] : sessions_) {
    CallKey key;
    key.id = bridge_.call_queued_to(link_gen_, "session/close", {{"sessionId", s.bridge_id}}, &key.generation);
    waiting.push_back(key);
  }
  auto until = Deadline::after(o_.close_wait);
  std::size_t answered = 0;
  while (answered < waiting.size() && !until.expired()) {
    pollfd p{bridge_.events()->fd(), POLLIN, 0};
    ::poll(&p, 1, until.poll_timeout_ms());
    for (auto& ev : bridge_.events()->drain()) {
      if (ev.kind == rpc::Event::Kind::request) answer_unroutable({0, ev.generation, ev.message["id"], string_of(ev.message, "method"), "", {}}, "the server is stopping");
      if (ev.kind != rpc::Event::Kind::response) continue;
      CallKey key{ev.generation, ev.call_id};
      if (std::find(waiting.begin(), waiting.end(), key) != waiting.end()) ++answered;
    }
  }
  return answered == waiting.size();
}

Deadline Server::next_deadline() const {
  Deadline d = Deadline::earliest(setup_deadline_, accept_paused_until_);
  for (auto& [id, s] : sessions_) d = Deadline::earliest(d, s.orphan_until);
  for (auto& [id, c] : clients_)
    if (!c->dead && c->unsent() > kClientHighWater) d = Deadline::earliest(d, Deadline::after(std::chrono::seconds(1)));
  return d;
}

void Server::timers() {
  if (accept_paused_until_.expired()) accept_paused_until_ = Deadline::never();
  if (link_ == Link::setting_up && setup_deadline_.expired()) {
    setup_deadline_ = Deadline::never();
    setup_failed("the bridge did not complete the ACP handshake within 30 s");
  }
  std::vector<std::string> moved_on;
  for (auto& [id, s] : sessions_) {
    if (s.busy && s.turn_client == 0 && s.orphan_until.expired()) {
      // Its client is gone and the bridge did not end the cancelled turn: the session moves on;
      // the turn's response, if it ever comes, is dropped (its call is still known).
      log("session " + id + ": a cancelled turn did not end within 5 s; the session moves on");
      s.busy = false;
      s.orphan_until = Deadline::never();
      pump(s);
      moved_on.push_back(id);
    }
  }
  for (auto& id : moved_on) forget_session_if_unused(id);
  auto now = Clock::now();
  for (auto& [id, c] : clients_) {
    if (c->dead || c->unsent() <= kClientHighWater) continue;
    if (c->stuck_since == base::TimePoint{}) c->stuck_since = now;
    else if (now - c->stuck_since >= kStuckClient) {
      log("client " + std::to_string(id) + " does not read its socket (" + std::to_string(c->unsent() >> 10) +
               " KiB unsent for 10 s): disconnected");
      c->dead = true;
    }
  }
}


void Server::begin_shutdown(std::uint64_t stopper, json stopper_id) {
  if (stopper) stoppers_.emplace_back(stopper, std::move(stopper_id));
  if (shutting_down_) return;
  shutting_down_ = true;
  if (stopper) log("stopping (asked by client " + std::to_string(stopper) + ")");
}


}  // namespace tether::serve
