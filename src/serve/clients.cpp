// The server's clients: accepting them (only our own uid), reading and writing their sockets
// without ever blocking the loop, and what happens when one leaves a session or goes away.
#include "serve/server_core.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/listener.h"

namespace tether::serve {

using base::Clock;
using rpc::member;
using rpc::string_of;

void Server::accept_clients() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The listener stays readable while the connection waits: do not spin on it.
        log(std::string("cannot accept a connection: ") + strerror(errno) + "; trying again in 100 ms");
        accept_paused_until_ = Deadline::after(std::chrono::milliseconds(100));
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log(std::string("accept failed: ") + strerror(errno));
      }
      return;
    }
    pid_t pid = 0;
    if (auto refused = check_peer(fd.get(), &pid)) {
      log(*refused);
      continue;
    }
    if (shutting_down_) continue;  // closed: the server is going away
    auto c = std::make_unique<Client>(o_.max_line);
    c->id = ++next_client_;
    c->fd = std::move(fd);
    if (o_.verbose > 0) log("client " + std::to_string(c->id) + " connected (pid " + std::to_string(pid) + ")");
    clients_.emplace(c->id, std::move(c));
  }
}

void Server::read_client(Client& c) {
  char buf[kReadBurst];
  ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    if (auto rest = c.framer.finish()) on_client_line(c, *rest);
    c.dead = true;
    return;
  }
  c.framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
  const std::uint64_t id = c.id;
  while (Client* live = client(id)) {
    auto line = live->framer.next();
    if (!line) break;
    // The view dies with the next push/next: handlers copy what they keep.
    on_client_line(*live, *line);
  }
}

void Server::flush(Client& c) {
  while (c.unsent() > 0) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.unsent(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
      c.stuck_since = {};
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    c.dead = true;  // EPIPE, ECONNRESET: it is gone
    return;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (std::size_t{1} << 16) && c.out_off > c.out.size() / 2) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
}

bool Server::send(std::uint64_t id, const std::string& line) {
  Client* c = client(id);
  if (!c) return false;
  c->out += line;
  c->out += '\n';
  if (!holding_output_) flush(*c);
  return !c->dead;
}

void Server::flush_all() {
  for (auto& [id, c] : clients_)
    if (!c->dead && c->unsent() > 0) flush(*c);
}

void Server::broadcast(const std::string& method, json params) {
  std::string line = rpc::dump(rpc::make_notification(method, std::move(params)));
  for (auto& [id, c] : clients_)
    if (!c->dead) send(id, line);
}

void Server::sweep_dead() {
  // Dropping a client can hand its requests to another, whose send can fail in turn: repeat.
  for (;;) {
    std::uint64_t victim = 0;
    for (auto& [id, c] : clients_)
      if (c->dead) {
        victim = id;
        break;
      }
    if (!victim) return;
    drop_client(victim);
  }
}

void Server::salvage_answers(Client& c) {
  char buf[kReadBurst];
  std::size_t budget = std::size_t{4} << 20;  // a client that floods as it dies is not read forever
  while (budget > 0) {
    ssize_t n = ::read(c.fd.get(), buf, std::min(sizeof buf, budget));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF, EAGAIN (the socket is non-blocking) or an error: nothing more
    c.framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
    budget -= static_cast<std::size_t>(n);
  }
  if (auto rest = c.framer.finish()) c.framer.push(*rest + "\n");
  while (auto line = c.framer.next()) {
    auto msg = rpc::parse_line(*line);
    if (msg && rpc::classify(*msg).kind == rpc::MessageKind::response) on_client_response(c.id, *msg);
  }
}

void Server::drop_client(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  it->second->dead = true;
  if (o_.verbose > 0) log("client " + std::to_string(id) + " disconnected");
  salvage_answers(*it->second);

  std::vector<std::string> touched;
  for (auto& [sid, s] : sessions_)
    if (s.has(id) || (s.busy && s.turn_client == id)) touched.push_back(sid);
  for (auto& sid : touched) leave_session(*session(sid), id, "the client that was asked disconnected");
  // Requests routed to it that named no session of its own are answered here.
  std::vector<std::int64_t> rest;
  for (auto& [rid, r] : routed_)
    if (r.client == id) rest.push_back(rid);
  for (std::int64_t rid : rest) {
    Routed r = std::move(routed_[rid]);
    routed_.erase(rid);
    answer_unroutable(r, "the client that was asked disconnected");
  }
  for (auto& [cid, call] : calls_)
    if (call.client == id) call.client = 0;  // its response is dropped when it comes
  std::erase_if(deferred_, [&](const ClientRequest& q) { return q.client == id; });
  std::erase_if(restart_waiters_, [&](const auto& w) { return w.first == id; });
  clients_.erase(it);
  for (auto& sid : touched) forget_session_if_unused(sid);
}

void Server::leave_session(Session& s, std::uint64_t id, std::string_view why) {
  const std::string sid = s.public_id;
  bool owns_turn = s.busy && s.turn_client == id;
  s.detach(id);
  for (auto q = s.queue.begin(); q != s.queue.end();) q = q->client == id ? s.queue.erase(q) : std::next(q);
  if (owns_turn) {
    // Its turn goes on without anyone to read it: stop it at the bridge.
    bridge_.notify("session/cancel", {{"sessionId", s.bridge_id}}, link_gen_);
    s.turn_client = 0;
    s.orphan_until = Deadline::after(kOrphanGrace);
    withdraw_permissions(sid, id);
  }
  // What the bridge asked it for this session: to another client (route), or answered here.
  std::vector<std::int64_t> mine;
  for (auto& [rid, r] : routed_)
    if (r.client == id && r.session == sid) mine.push_back(rid);
  std::sort(mine.begin(), mine.end());  // oldest first, as they were asked
  for (std::int64_t rid : mine) {
    Routed r = std::move(routed_[rid]);
    routed_.erase(rid);
    if (Client* c = client(id)) {
      // Still connected (it detached): it must not answer what is no longer its to answer.
      c->out += rpc::dump(rpc::make_notification("$/cancel_request", {{"requestId", rid}})) + "\n";
      flush(*c);
    }
    bool turn_cancelled = s.busy && s.turn_client == 0;
    if (s.active() && !turn_cancelled) route(std::move(r));
    else answer_unroutable(r, why);
  }
}

void Server::forget_session_if_unused(const std::string& public_id) {
  Session* s = session(public_id);
  if (!s || s->main || !s->attached.empty() || s->busy || !s->queue.empty() || s->load_call) return;
  // Nobody can reach it any more: forget it here, and close it at the agent when it can close
  // sessions (Claude keeps a 200+ MB process per open session). The answer goes to no one.
  if (profile_.close && link_ == Link::ready) send_call("session/close", {{"sessionId", s->bridge_id}}, Call{});
  by_bridge_id_.erase(s->bridge_id);
  sessions_.erase(public_id);
}


}  // namespace tether::serve
