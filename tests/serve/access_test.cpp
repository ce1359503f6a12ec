// Who may connect (only our uid, a private directory, a 0600 socket) and one server per socket
// name (--stop, stale sockets, a client waiting for a server that is still starting).
#include "serve/serve_e2e.h"
#include "serve/socket_path.h"

using namespace serve_e2e;

// --- 6. who may connect -------------------------------------------------------------------------------

TEST_CASE("another uid cannot connect: the socket is 0600, and a connection that gets through is refused") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to connect as uid 65534");
    return;
  }
  const char* probe = std::getenv("TETHER_SERVE_PROBE");
  REQUIRE(probe != nullptr);
  TmpDir t;
  REQUIRE(::chmod(t.dir.c_str(), 0755) == 0);  // others may reach the socket file
  Server srv(t);
  srv.wait_ready();
  struct stat st;
  REQUIRE(::stat(srv.socket().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  // A copy of the probe that uid 65534 can surely reach and run.
  std::string probe_copy = t.path("probe");
  {
    std::ifstream in(probe, std::ios::binary);
    std::ofstream out(probe_copy, std::ios::binary);
    out << in.rdbuf();
  }
  REQUIRE(::chmod(probe_copy.c_str(), 0755) == 0);
  std::string setpriv = ::access("/usr/bin/setpriv", X_OK) == 0 ? "/usr/bin/setpriv" : "/bin/setpriv";
  std::vector<std::string> as_nobody{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", probe_copy, srv.socket()};

  auto denied = run_to_end(t, as_nobody, 10s);
  INFO("probe: " << denied.out << denied.err);
  CHECK(denied.status == 2);
  CHECK(contains(denied.out, "EACCES"));

  REQUIRE(::chmod(srv.socket().c_str(), 0666) == 0);
  auto refused = run_to_end(t, as_nobody, 10s);
  INFO("probe: " << refused.out << refused.err << "server stderr:\n" << srv.log());
  CHECK(refused.status == 0);
  CHECK(contains(refused.out, "closed"));
  CHECK(srv.wait_log("refused a connection from uid 65534"));
  // The owner still gets in.
  Raw mine(srv.socket());
  initialize(mine);
}

TEST_CASE("a named server lives in a private 0700 directory with a 0600 socket") {
  TmpDir t;
  std::string dir = t.dir + "/run/tether";
  std::string sock = dir + "/e2e.sock";
  Proc server({tether_bin(), "serve", "--name", "e2e"}, t.env(), t.path("named.out"), t.path("named.err"));
  bool up = eventually([&] { return contains(server.err(), "listening on") || !server.running(); }, 15s);
  INFO("server stderr:\n" << server.err());
  REQUIRE(up);
  CHECK(contains(server.err(), "listening on " + sock));
  struct stat st;
  REQUIRE(::lstat(dir.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::lstat(sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  auto stop = run_to_end(t, {tether_bin(), "serve", "--stop", "--name", "e2e"});
  INFO(stop.err);
  CHECK(stop.status == 0);
  CHECK(server.wait_exit(10s) == 0);
  CHECK(::lstat(sock.c_str(), &st) != 0);
}

// --- 7. one server per socket ---------------------------------------------------------------------------

TEST_CASE("one server per socket: a second one exits 69; --stop frees the name; a stale socket is replaced") {
  TmpDir t;
  auto first = std::make_unique<Server>(t, std::vector<std::string>{}, "", "first");
  first->wait_ready();
  std::string sock = first->socket();
  Raw c(sock);
  auto bridge_pid = status(c)["pid"].get<pid_t>();

  auto second = run_to_end(t, {tether_bin(), "serve", "--socket", sock});
  INFO("second server stderr: " << second.err);
  CHECK(second.status == 69);
  CHECK(contains(second.err, "already running"));
  CHECK(first->proc().running());
  CHECK(status(c)["generation"] == 1);  // the first one is undisturbed

  auto stop = run_to_end(t, {tether_bin(), "serve", "--stop", "--socket", sock});
  INFO("--stop stderr: " << stop.err);
  CHECK(stop.status == 0);
  // --stop returns once the name is free: the socket is gone already.
  struct stat st;
  CHECK(::lstat(sock.c_str(), &st) != 0);
  CHECK(first->proc().wait_exit(10s) == 0);
  CHECK(c.wait_closed());
  CHECK(eventually([&] { return !tether::test::process_exists(bridge_pid); }));
  first.reset();

  // A new server takes the name; killed outright it leaves its socket behind, which the next one replaces.
  auto again = std::make_unique<Server>(t, std::vector<std::string>{}, "", "again");
  again->wait_ready();
  again->proc().kill(SIGKILL);
  CHECK(again->proc().wait_exit(5s) == 128 + SIGKILL);
  CHECK(::lstat(sock.c_str(), &st) == 0);  // stale
  again.reset();
  Server third(t, {}, "", "third");
  third.wait_ready();
  CHECK(contains(third.log(), "replaced the stale socket"));
  Raw d(sock);
  initialize(d);
  // SIGTERM: the status says so, and the socket goes with the server.
  third.proc().kill(SIGTERM);
  CHECK(third.proc().wait_exit(10s) == 128 + SIGTERM);
  CHECK(::lstat(sock.c_str(), &st) != 0);
  CHECK(d.wait_closed());
}

TEST_CASE("serve --stop with no server running exits 69") {
  TmpDir t;
  auto r = run_to_end(t, {tether_bin(), "serve", "--stop", "--socket", t.path("none.sock")});
  INFO(r.err);
  CHECK(r.status == 69);
  CHECK(contains(r.err, "no tether server is running"));
}

// Whether one of `pid`'s threads is named `name` (/proc/PID/task/TID/comm).
bool has_thread(pid_t pid, const std::string& name) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (!d) return false;
  bool found = false;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.' && slurp(task + "/" + e->d_name + "/comm") == name + "\n") found = true;
  ::closedir(d);
  return found;
}

TEST_CASE("Ctrl-C ends a prompt --connect that waits for a server still starting, at once") {
  TmpDir t;
  const std::string sock = t.path("starting.sock");
  // A server that has taken the name but does not listen yet (its bridge is still starting): a
  // client waits up to 10 s for it (socket_path.h).
  int lock = ::open((sock + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(lock >= 0);
  REQUIRE(tether::serve::take_server_lock(lock));  // as `tether serve` takes it

  Proc client(connect_arg("prompt", sock, {"--json", "hi"}), t.env(), t.path("c.out"), t.path("c.err"));
  // Its bridge's supervisor thread runs: start() is waiting (signals are blocked before any thread).
  REQUIRE(eventually([&] { return has_thread(client.pid(), "tether-super"); }, 5s));
  client.kill(SIGINT);
  // An ordering, not a speed: it ends before its 10 s of patience would (started after the lock
  // was taken, so the patience runs from then at the earliest), and by the interrupt (an ended
  // patience would be a "no server" error, not "cancelled").
  auto status = client.wait_exit(9s);
  INFO("stdout: " << client.out() << "\nstderr: " << client.err());
  REQUIRE(status.has_value());
  CHECK(*status == 128 + SIGINT);
  auto out = json::parse(client.out());
  CHECK(out["ok"] == false);
  CHECK(out["error"]["code"] == "cancelled");
  ::close(lock);
}
