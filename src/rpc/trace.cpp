#include "rpc/trace.h"

#include <sys/time.h>
#include <time.h>

#include <cerrno>
#include <cstring>

namespace tether::rpc {

std::shared_ptr<Trace> Trace::open(const std::string& path, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "we");
  if (!f) {
    error = "cannot open trace file " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::shared_ptr<Trace>(new Trace(f));
}

Trace::~Trace() { std::fclose(file_); }

void Trace::write(std::uint64_t generation, std::string_view tag, std::string_view text) {
  struct timeval tv;
  ::gettimeofday(&tv, nullptr);
  struct tm tm;
  ::gmtime_r(&tv.tv_sec, &tm);
  char stamp[96];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long>(tv.tv_usec));
  base::MutexLock lock(mu_);
  std::fprintf(file_, "%s g%llu %.*s %.*s\n", stamp, static_cast<unsigned long long>(generation),
               static_cast<int>(tag.size()), tag.data(), static_cast<int>(text.size()), text.data());
  std::fflush(file_);  // a trace is read after a crash: keep it complete
}

void Trace::frame(std::uint64_t generation, Direction dir, std::string_view line) {
  write(generation, dir == Direction::to_bridge ? "->" : "<-", line);
}

void Trace::note(std::uint64_t generation, std::string_view text) { write(generation, "**", text); }

}  // namespace tether::rpc
