// The fs capability's confinement: absolute paths only, no `..` or symlink escape, reads and atomic
// writes inside the session directory. Works on a scratch directory; no processes.
#include <doctest/doctest.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "acp/fs.h"

using tether::acp::FsError;
using tether::acp::FsRoot;
using nlohmann::json;

namespace {

// /tmp/tether-fs-XXXXXX/{root/{a.txt,sub/{b.txt,up},link-out,link-in,...},outside/secret.txt}
struct Scratch {
  std::string top, root, outside;
  Scratch() {
    char tmpl[] = "/tmp/tether-fs-XXXXXX";
    top = ::mkdtemp(tmpl);
    root = top + "/root";
    outside = top + "/outside";
    ::mkdir(root.c_str(), 0755);
    ::mkdir((root + "/sub").c_str(), 0755);
    ::mkdir(outside.c_str(), 0755);
    write(root + "/a.txt", "one\ntwo\nthree\nfour\n");
    write(root + "/sub/b.txt", "bee");
    write(outside + "/secret.txt", "secret");
    [[maybe_unused]] int r = ::symlink((outside + "/secret.txt").c_str(), (root + "/link-out").c_str());
    r = ::symlink((root + "/sub/b.txt").c_str(), (root + "/link-in").c_str());
    r = ::symlink((root + "/nowhere").c_str(), (root + "/dangling").c_str());
    r = ::symlink(outside.c_str(), (root + "/dir-out").c_str());
    r = ::symlink("sub/b.txt", (root + "/rel-in").c_str());
    r = ::symlink("../outside/secret.txt", (root + "/rel-out").c_str());
    r = ::symlink("..", (root + "/sub/up").c_str());
    r = ::symlink("loop", (root + "/loop").c_str());
  }
  ~Scratch() { [[maybe_unused]] int r = ::system(("rm -rf '" + top + "'").c_str()); }
  static void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

// The answer's error code (0: it succeeded).
int code_of(const std::variant<json, FsError>& r) {
  auto* e = std::get_if<FsError>(&r);
  return e ? e->code : 0;
}

std::string content(const std::variant<json, FsError>& r) {
  auto* j = std::get_if<json>(&r);
  if (!j) {
    FAIL_CHECK("error: " << std::get<FsError>(r).message);
    return {};
  }
  return (*j)["content"].get<std::string>();
}

// Every behaviour holds for both resolvers: openat2, and the walk used where the kernel lacks it.
constexpr FsRoot::Resolver kResolvers[] = {FsRoot::Resolver::kAuto, FsRoot::Resolver::kWalk};

}  // namespace

TEST_CASE("reads inside the root are served; escapes are refused") {
  Scratch s;
  for (auto resolver : kResolvers) {
    CAPTURE(static_cast<int>(resolver));
    FsRoot fs(s.root, resolver);
    auto read = [&](const std::string& path) { return fs.read_text_file({{"path", path}}); };
    CHECK(content(read(s.root + "/a.txt")) == "one\ntwo\nthree\nfour\n");
    CHECK(content(read(s.root + "/sub/../a.txt")) == "one\ntwo\nthree\nfour\n");
    CHECK(content(read(s.root + "//sub/./b.txt")) == "bee");
    CHECK(content(read(s.root + "/link-in")) == "bee");          // absolute link, pointing inside
    CHECK(content(read(s.root + "/rel-in")) == "bee");           // relative link, pointing inside
    CHECK(content(read(s.root + "/sub/up/a.txt")) == "one\ntwo\nthree\nfour\n");  // sub/up -> ..

    CHECK(code_of(read("a.txt")) == -32602);                        // relative
    CHECK(code_of(read("./a.txt")) == -32602);
    CHECK(code_of(read("")) == -32602);
    CHECK(code_of(read(s.root + "/../outside/secret.txt")) == -32602);  // ..
    CHECK(code_of(read(s.root + "/link-out")) == -32602);           // symlink out
    CHECK(code_of(read(s.root + "/rel-out")) == -32602);            // relative symlink out
    CHECK(code_of(read(s.root + "/dir-out/secret.txt")) == -32602); // through a dir link
    CHECK(code_of(read(s.root + "/loop")) == -32602);               // a symlink to itself
    CHECK(code_of(read("/etc/hostname")) == -32602);
    CHECK(code_of(read(s.root + "/missing.txt")) == -32002);        // inside, not there
    CHECK(code_of(read(s.root + "/a.txt/x")) == -32002);            // a file is no directory
    CHECK(code_of(read(s.outside + "/missing.txt")) == -32602);     // outside, not there
    CHECK(code_of(read(s.root + "/dir-out/missing.txt")) == -32602);
    // A sibling whose name starts like the root is outside.
    FsRoot sub(s.root + "/sub", resolver);
    CHECK(code_of(sub.read_text_file({{"path", s.root + "/sub/../a.txt"}})) == -32602);
    CHECK(code_of(sub.read_text_file({{"path", s.root + "/subx"}})) == -32602);
  }
  // The root as given, through a symlink to it, is the root too: the agent was sent that path.
  std::string alias = s.top + "/alias";
  REQUIRE(::symlink(s.root.c_str(), alias.c_str()) == 0);
  for (auto resolver : kResolvers) {
    FsRoot fs(alias + "/", resolver);
    CHECK(fs.root() == s.root);
    CHECK(content(fs.read_text_file({{"path", alias + "/sub/b.txt"}})) == "bee");
    CHECK(content(fs.read_text_file({{"path", s.root + "/sub/b.txt"}})) == "bee");
  }
}

TEST_CASE("read_text_file: whole file, 1-based line, limit") {
  Scratch s;
  FsRoot fs(s.root);
  std::string a = s.root + "/a.txt";
  CHECK(content(fs.read_text_file({{"sessionId", "x"}, {"path", a}})) == "one\ntwo\nthree\nfour\n");
  CHECK(content(fs.read_text_file({{"path", a}, {"line", 2}})) == "two\nthree\nfour\n");
  CHECK(content(fs.read_text_file({{"path", a}, {"line", 2}, {"limit", 2}})) == "two\nthree\n");
  CHECK(content(fs.read_text_file({{"path", a}, {"limit", 1}})) == "one\n");
  CHECK(content(fs.read_text_file({{"path", a}, {"line", 9}})) == "");
  CHECK(content(fs.read_text_file({{"path", a}, {"line", nullptr}, {"limit", nullptr}})) == "one\ntwo\nthree\nfour\n");
  CHECK(std::get<FsError>(fs.read_text_file({{"path", a}, {"line", 0}})).code == -32602);
  CHECK(std::get<FsError>(fs.read_text_file({{"path", a}, {"limit", -1}})).code == -32602);
  CHECK(std::get<FsError>(fs.read_text_file({{"path", 3}})).code == -32602);
  CHECK(std::get<FsError>(fs.read_text_file({{"path", s.root + "/sub"}})).code == -32602);  // a directory
  CHECK(std::get<FsError>(fs.read_text_file({{"path", s.root + "/link-out"}})).code == -32602);
}

TEST_CASE("select_lines keeps newlines and handles a last line without one") {
  CHECK(tether::acp::select_lines("a\nb\nc", 3, 1) == "c");
  CHECK(tether::acp::select_lines("a\nb\nc", 2, -1) == "b\nc");
  CHECK(tether::acp::select_lines("", 1, 5) == "");
  CHECK(tether::acp::select_lines("a\n", 1, 0) == "");
}

TEST_CASE("writes: inside only, atomic, new files created, links followed only inward") {
  for (auto resolver : kResolvers) {
    CAPTURE(static_cast<int>(resolver));
    Scratch s;
    FsRoot fs(s.root, resolver);
    std::string a = s.root + "/a.txt";
    ::chmod(a.c_str(), 0640);
    REQUIRE(std::holds_alternative<json>(fs.write_text_file({{"sessionId", "x"}, {"path", a}, {"content", "new\n"}})));
    CHECK(Scratch::read(a) == "new\n");
    struct stat st;
    REQUIRE(::stat(a.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);  // the mode of the file it replaced

    std::string fresh = s.root + "/sub/new.txt";
    REQUIRE(std::holds_alternative<json>(fs.write_text_file({{"path", fresh}, {"content", "x"}})));
    CHECK(Scratch::read(fresh) == "x");

    // Writing through an inward link writes its target and keeps the link.
    REQUIRE(std::holds_alternative<json>(fs.write_text_file({{"path", s.root + "/link-in"}, {"content", "via link"}})));
    CHECK(Scratch::read(s.root + "/sub/b.txt") == "via link");
    REQUIRE(::lstat((s.root + "/link-in").c_str(), &st) == 0);
    CHECK(S_ISLNK(st.st_mode));

    auto code = [&](const std::string& path) {
      auto r = fs.write_text_file({{"path", path}, {"content", "evil"}});
      return std::holds_alternative<FsError>(r) ? std::get<FsError>(r).code : 0;
    };
    CHECK(code("relative.txt") == -32602);
    CHECK(code(s.root + "/../outside/new.txt") == -32602);
    CHECK(code(s.root + "/link-out") == -32602);
    CHECK(code(s.root + "/dir-out/new.txt") == -32602);
    CHECK(code(s.root + "/dangling") == -32602);
    CHECK(code(s.root + "/sub") == -32602);           // a directory
    CHECK(code(s.root + "/sub/..") == -32602);
    CHECK(code(s.root + "/nodir/x.txt") == -32002);   // a missing directory is not created
    CHECK(Scratch::read(s.outside + "/secret.txt") == "secret");
    CHECK(::access((s.outside + "/new.txt").c_str(), F_OK) != 0);

    // No temporary files left behind.
    int leftovers = 0;
    for (const std::string& dir : {s.root, s.root + "/sub"}) {
      DIR* d = ::opendir(dir.c_str());
      while (auto* e = ::readdir(d))
        if (std::string(e->d_name).find(".tether-") != std::string::npos) ++leftovers;
      ::closedir(d);
    }
    CHECK(leftovers == 0);
    CHECK(std::get<FsError>(fs.write_text_file({{"path", a}})).code == -32602);  // no content
  }
}

TEST_CASE("writes: relative links, `..` inside, the mode of a new file, the size limit") {
  for (auto resolver : kResolvers) {
    CAPTURE(static_cast<int>(resolver));
    Scratch s;
    FsRoot fs(s.root, resolver);
    auto write = [&](const std::string& path, const std::string& text) {
      return code_of(fs.write_text_file({{"path", path}, {"content", text}}));
    };
    CHECK(write(s.root + "/rel-in", "relative") == 0);
    CHECK(Scratch::read(s.root + "/sub/b.txt") == "relative");
    CHECK(write(s.root + "/sub/up/via-up.txt", "up") == 0);
    CHECK(Scratch::read(s.root + "/via-up.txt") == "up");
    CHECK(write(s.root + "/rel-out", "evil") == -32602);
    CHECK(write(s.root + "/loop", "evil") == -32602);
    CHECK(Scratch::read(s.outside + "/secret.txt") == "secret");

    mode_t mask = ::umask(022);  // no other thread runs here
    ::umask(mask);
    struct stat st;
    REQUIRE(::stat((s.root + "/via-up.txt").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == (0666 & ~mask));

    std::string big(tether::acp::kMaxWriteBytes + 1, 'x');
    CHECK(write(s.root + "/big.txt", big) == -32602);
    CHECK(::access((s.root + "/big.txt").c_str(), F_OK) != 0);
  }
}

TEST_CASE("reads: a file over the size limit is refused without reading it") {
  Scratch s;
  std::string big = s.root + "/big.bin";
  int fd = ::open(big.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(tether::acp::kMaxReadBytes) + 1) == 0);  // sparse
  ::close(fd);
  FsRoot fs(s.root);
  auto r = fs.read_text_file({{"path", big}});
  REQUIRE(std::holds_alternative<FsError>(r));
  CHECK(std::get<FsError>(r).message.find("larger than") != std::string::npos);
}

// Hostile input (issue 12). An agent that can change the session directory swaps `race` between a
// real directory and a symlink to the outside while it asks for `race/...`: no read may return an
// outside file and no write (nor its temporary file) may land outside, however the race falls.
// Bounded: 2 s (or 40000 attempts) per resolver; the verdict does not depend on timing.
TEST_CASE("a directory swapped for a symlink to the outside never lets a read or a write out") {
  for (auto resolver : kResolvers) {
    CAPTURE(static_cast<int>(resolver));
    Scratch s;
    std::string race = s.root + "/race", spare = s.root + "/spare";
    REQUIRE(::mkdir(race.c_str(), 0755) == 0);
    Scratch::write(race + "/secret.txt", "inside");
    REQUIRE(::symlink(s.outside.c_str(), spare.c_str()) == 0);
    FsRoot fs(s.root, resolver);
    std::atomic<bool> stop{false};
    std::atomic<long> swaps{0};
    std::thread swapper([&] {
      while (!stop.load()) {
        if (::renameat2(AT_FDCWD, race.c_str(), AT_FDCWD, spare.c_str(), RENAME_EXCHANGE) == 0) ++swaps;
      }
    });
    // Reads first, then writes (each write syncs its file, so they are slower): 1 s each at most.
    int attempts = 0, leaked_reads = 0, inside_reads = 0, inside_writes = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
    for (int i = 0; i < 20000 && std::chrono::steady_clock::now() < until; ++i, ++attempts) {
      auto r = fs.read_text_file({{"path", race + "/secret.txt"}});
      if (auto* j = std::get_if<json>(&r)) {
        if ((*j)["content"] == "secret") ++leaked_reads;
        else ++inside_reads;
      }
    }
    until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
    for (int i = 0; i < 20000 && std::chrono::steady_clock::now() < until; ++i, ++attempts) {
      auto w = fs.write_text_file({{"path", race + "/planted.txt"}, {"content", "planted"}});
      inside_writes += std::holds_alternative<json>(w);
    }
    stop = true;
    swapper.join();
    MESSAGE(attempts << " attempts, " << swaps.load() << " swaps, reads inside " << inside_reads << ", writes "
                     << inside_writes);
    CHECK(leaked_reads == 0);
    CHECK(Scratch::read(s.outside + "/secret.txt") == "secret");
    int outside_entries = 0;
    DIR* d = ::opendir(s.outside.c_str());
    while (auto* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != ".." && name != "secret.txt") {
        MESSAGE("outside: " << name);
        ++outside_entries;
      }
    }
    ::closedir(d);
    CHECK(outside_entries == 0);
    // Nor are temporary files left inside: the directory is at one of the two names now.
    int leftovers = 0;
    for (const std::string& dir : {race, spare}) {
      struct stat st;
      if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      DIR* in = ::opendir(dir.c_str());
      while (auto* e = ::readdir(in)) leftovers += std::string(e->d_name).find(".tether-") != std::string::npos;
      ::closedir(in);
    }
    CHECK(leftovers == 0);
  }
}

// A FIFO (or a socket, or a directory) is not a file to read: the answer is an error at once. Were
// it opened for a blocking read, tether's main thread would wait for a writer forever; the guard
// thread opens the writing end after 5 s so that a failing test ends.
TEST_CASE("a FIFO or a socket is refused at once, never read") {
  for (auto resolver : kResolvers) {
    CAPTURE(static_cast<int>(resolver));
    Scratch s;
    std::string fifo = s.root + "/pipe";
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    FsRoot fs(s.root, resolver);
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool rescued = false;  // the read blocked on the FIFO until the guard opened its other end
    std::thread guard([&] {
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return done; })) {
        rescued = true;
        int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) ::close(fd);
      }
    });
    auto r = fs.read_text_file({{"path", fifo}});
    {
      std::lock_guard<std::mutex> lock(mu);
      done = true;
    }
    cv.notify_all();
    guard.join();
    CHECK_FALSE(rescued);  // it returned without the guard's help: it never waited on the FIFO
    REQUIRE(std::holds_alternative<FsError>(r));
    CHECK(std::get<FsError>(r).code == -32602);
    CHECK(std::get<FsError>(r).message.find("not a regular file") != std::string::npos);

    // A socket: open() fails with ENXIO; the answer still says what it is.
    std::string sock = s.root + "/sock";
    int sfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(sock.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
    REQUIRE(::bind(sfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    auto rs = fs.read_text_file({{"path", sock}});
    ::close(sfd);
    REQUIRE(std::holds_alternative<FsError>(rs));
    CHECK(std::get<FsError>(rs).message.find("not a regular file") != std::string::npos);

    // Nor is a FIFO replaced by a write: it is not a file tether would have written.
    auto w = fs.write_text_file({{"path", fifo}, {"content", "x"}});
    REQUIRE(std::holds_alternative<FsError>(w));
    CHECK(std::get<FsError>(w).message.find("not a regular file") != std::string::npos);
    struct stat st;
    REQUIRE(::lstat(fifo.c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));
  }
}

// The spec's resource-not-found error: Gemini CLI recognises a missing file only by this code and a
// message that starts "Resource not found"; it reads a file before its first write of it.
TEST_CASE("a missing file is -32002 \"Resource not found\", for reads and for a missing directory") {
  Scratch s;
  FsRoot fs(s.root);
  auto r = fs.read_text_file({{"path", s.root + "/missing.txt"}});
  REQUIRE(std::holds_alternative<FsError>(r));
  CHECK(std::get<FsError>(r).code == -32002);
  CHECK(std::get<FsError>(r).message.rfind("Resource not found", 0) == 0);
  auto w = fs.write_text_file({{"path", s.root + "/nodir/x.txt"}, {"content", "x"}});
  REQUIRE(std::holds_alternative<FsError>(w));
  CHECK(std::get<FsError>(w).code == -32002);
  CHECK(std::get<FsError>(w).message.rfind("Resource not found", 0) == 0);
  // Outside, missing or not, is "outside": nothing is said about what exists there.
  auto o = fs.read_text_file({{"path", s.outside + "/missing.txt"}});
  REQUIRE(std::holds_alternative<FsError>(o));
  CHECK(std::get<FsError>(o).code == -32602);
}
