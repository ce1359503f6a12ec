// The fs capability's confinement: absolute paths only, no `..` or symlink escape, reads and atomic
// writes inside the session directory. Works on a scratch directory; no processes.
#include <doctest/doctest.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "acp/fs.h"

using tether::acp::FsError;
using tether::acp::FsRoot;
using nlohmann::json;

namespace {

// /tmp/tether-fs-XXXXXX/{root/{a.txt,sub/b.txt,link-out,link-in,dangling},outside/secret.txt}
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

int error_code(const std::variant<std::string, FsError>& r) {
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

}  // namespace

TEST_CASE("reads inside the root resolve; escapes are refused") {
  Scratch s;
  FsRoot fs(s.root);
  CHECK(std::get<std::string>(fs.resolve_read(s.root + "/a.txt")) == s.root + "/a.txt");
  CHECK(std::get<std::string>(fs.resolve_read(s.root + "/sub/../a.txt")) == s.root + "/a.txt");
  CHECK(std::get<std::string>(fs.resolve_read(s.root + "/link-in")) == s.root + "/sub/b.txt");

  CHECK(error_code(fs.resolve_read("a.txt")) == -32602);                        // relative
  CHECK(error_code(fs.resolve_read("./a.txt")) == -32602);
  CHECK(error_code(fs.resolve_read("")) == -32602);
  CHECK(error_code(fs.resolve_read(s.root + "/../outside/secret.txt")) == -32602);  // ..
  CHECK(error_code(fs.resolve_read(s.root + "/link-out")) == -32602);           // symlink out
  CHECK(error_code(fs.resolve_read(s.root + "/dir-out/secret.txt")) == -32602); // through a dir link
  CHECK(error_code(fs.resolve_read("/etc/hostname")) == -32602);
  CHECK(error_code(fs.resolve_read(s.root + "/missing.txt")) == -32002);        // inside, not there
  CHECK(error_code(fs.resolve_read(s.outside + "/missing.txt")) == -32602);     // outside, not there
  // A sibling whose name starts like the root is outside.
  FsRoot sub(s.root + "/sub");
  CHECK(error_code(sub.resolve_read(s.root + "/sub/../a.txt")) == -32602);
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
  Scratch s;
  FsRoot fs(s.root);
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
