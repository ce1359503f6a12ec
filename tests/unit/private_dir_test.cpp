// base::open_private_dir and open_private_file against a scratch directory: what is created, what
// is refused and why, and that nothing planted is ever followed. No processes.
#include <doctest/doctest.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "base/private_dir.h"

using tether::base::open_private_dir;
using tether::base::open_private_file;
using tether::base::UniqueFd;

namespace {

struct Scratch {
  std::string dir;
  Scratch() {
    char tmpl[] = "/tmp/tether-private-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Scratch() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

std::string refusal(const std::variant<UniqueFd, std::string>& r) {
  auto* why = std::get_if<std::string>(&r);
  return why ? *why : std::string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("private dir: created 0700, with parents on request, and opened again as it is") {
  Scratch s;
  auto r = open_private_dir(s.path("state"));
  REQUIRE(std::holds_alternative<UniqueFd>(r));
  struct stat st;
  REQUIRE(::lstat(s.path("state").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(std::holds_alternative<UniqueFd>(open_private_dir(s.path("state"))));

  CHECK(refusal(open_private_dir(s.path("a/b/c"))).find("cannot create") != std::string::npos);
  REQUIRE(std::holds_alternative<UniqueFd>(open_private_dir(s.path("a/b/c"), true)));
  REQUIRE(::lstat(s.path("a/b").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(refusal(open_private_dir("relative/dir")).find("not an absolute path") != std::string::npos);
}

TEST_CASE("private dir: a symlink, a file, a directory open to others or someone else's are refused") {
  Scratch s;
  REQUIRE(::mkdir(s.path("elsewhere").c_str(), 0700) == 0);
  REQUIRE(::symlink(s.path("elsewhere").c_str(), s.path("link").c_str()) == 0);
  CHECK(refusal(open_private_dir(s.path("link"))).find("symlink") != std::string::npos);
  std::ofstream(s.path("file")) << "x";
  CHECK(refusal(open_private_dir(s.path("file"))).find("not a directory") != std::string::npos);
  REQUIRE(::mkdir(s.path("open").c_str(), 0700) == 0);
  REQUIRE(::chmod(s.path("open").c_str(), 0755) == 0);
  CHECK(refusal(open_private_dir(s.path("open"))).find("open to other users (mode 755); run: chmod 700") !=
        std::string::npos);
  // Another user's directory: only root can make one to test with.
  if (::geteuid() == 0) {
    REQUIRE(::mkdir(s.path("theirs").c_str(), 0700) == 0);
    REQUIRE(::chown(s.path("theirs").c_str(), 65534, 65534) == 0);
    CHECK(refusal(open_private_dir(s.path("theirs"))).find("belongs to uid 65534") != std::string::npos);
  }
}

TEST_CASE("private file: created O_EXCL 0600; a planted symlink, FIFO or hard link is refused") {
  Scratch s;
  auto r = open_private_dir(s.path("state"));
  REQUIRE(std::holds_alternative<UniqueFd>(r));
  int dir = std::get<UniqueFd>(r).get();

  int fd = open_private_file(dir, "history", O_WRONLY | O_CREAT | O_APPEND);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "one\n", 4) == 4);
  ::close(fd);
  fd = open_private_file(dir, "history", O_WRONLY | O_CREAT | O_APPEND);  // it exists: appended
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "two\n", 4) == 4);
  ::close(fd);
  CHECK(slurp(s.path("state/history")) == "one\ntwo\n");
  struct stat st;
  REQUIRE(::stat(s.path("state/history").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  std::ofstream(s.path("victim")) << "victim\n";
  REQUIRE(::symlink(s.path("victim").c_str(), s.path("state/link").c_str()) == 0);
  errno = 0;
  CHECK(open_private_file(dir, "link", O_WRONLY | O_CREAT | O_APPEND) == -1);
  CHECK(errno == ELOOP);
  CHECK(open_private_file(dir, "link", O_RDONLY) == -1);
  CHECK(slurp(s.path("victim")) == "victim\n");

  REQUIRE(::mkfifo(s.path("state/fifo").c_str(), 0600) == 0);
  errno = 0;
  CHECK(open_private_file(dir, "fifo", O_RDONLY) == -1);  // at once, not waiting for a writer
  CHECK(errno == EPERM);

  REQUIRE(::link(s.path("victim").c_str(), s.path("state/hard").c_str()) == 0);
  CHECK(open_private_file(dir, "hard", O_WRONLY | O_APPEND) == -1);
  CHECK(slurp(s.path("victim")) == "victim\n");

  CHECK(open_private_file(dir, "../victim", O_RDONLY) == -1);
}
