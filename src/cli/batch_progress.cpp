#include "cli/batch_progress.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace tether::cli::batch {

ItemCounter::ItemCounter(std::size_t max_line, Shard shard) : max_line_(max_line), shard_(shard) {
  if (shard_.n > 1) reader_.emplace(max_line);
}

void ItemCounter::feed(std::string_view bytes) {
  if (finished_) return;
  if (reader_) {
    reader_->push(bytes);
    while (auto line = reader_->next())
      if (shard_.contains(parse_item(*line).id_text)) ++count_;
    return;
  }
  while (!bytes.empty()) {
    const void* nl = std::memchr(bytes.data(), '\n', bytes.size());
    std::size_t n = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - bytes.data()) : bytes.size();
    std::string_view piece = bytes.substr(0, n);
    // Once a line is known to be non-blank only its length matters, so most lines cost one check.
    if (!piece.empty() && !nonblank_) {
      if (cr_last_) nonblank_ = true;  // a '\r' with more bytes after it in the same line
      cr_last_ = piece.back() == '\r';
      std::string_view body = cr_last_ ? piece.substr(0, piece.size() - 1) : piece;
      if (body.find_first_not_of(" \t") != std::string_view::npos) nonblank_ = true;
    }
    length_ += piece.size();
    if (!nl) return;
    end_line();
    bytes.remove_prefix(n + 1);
  }
}

void ItemCounter::end_line() {
  // LineReader's rule: too long (the '\r' counts toward the cap) is an item; so is non-blank.
  if (length_ > max_line_ || nonblank_) ++count_;
  length_ = 0;
  nonblank_ = false;
  cr_last_ = false;
}

void ItemCounter::finish() {
  if (finished_) return;
  if (reader_) {
    if (auto line = reader_->finish(); line && shard_.contains(parse_item(*line).id_text)) ++count_;
  } else if (length_ > 0) {
    end_line();
  }
  finished_ = true;
}

void Throughput::start(base::TimePoint t) {
  samples_.clear();
  samples_.push_back({t, completed_});
}

void Throughput::completed(base::TimePoint t) {
  ++completed_;
  if (samples_.size() > 1 && t - samples_.back().t < std::chrono::milliseconds(100)) samples_.back().completed = completed_;
  else samples_.push_back({t, completed_});
  // The next sample can be the base too: enough completions after it, and far enough back.
  while (samples_.size() > 2 && completed_ - samples_[1].completed >= window_ && t - samples_[1].t >= min_span_)
    samples_.pop_front();
}

std::optional<double> Throughput::per_second(base::TimePoint now) const {
  if (completed_ == 0 || samples_.empty()) return std::nullopt;
  const Sample& from = samples_.front();
  double secs = std::chrono::duration<double>(now - from.t).count();
  return double(completed_ - from.completed) / std::max(secs, 0.001);
}

std::string format_rate(double per_second) {
  char buf[32];
  std::snprintf(buf, sizeof buf, per_second >= 100 ? "%.0f" : "%.1f", per_second);
  return buf;
}

std::string format_duration(double seconds) {
  // A time left from a rate near zero can be anything up to infinity: past 9999 hours (over a
  // year) the figure means nothing, so it is capped (and never cast to an int it overflows).
  constexpr double kCap = 10000.0 * 3600;
  if (!(seconds < kCap)) return ">9999h";  // NaN included
  seconds = std::max(seconds, 0.0);
  char buf[32];
  auto whole = static_cast<long long>(seconds);
  if (seconds < 60) std::snprintf(buf, sizeof buf, "%.1f s", seconds);
  else if (seconds < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", whole / 60, whole % 60);
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm", whole / 3600, whole / 60 % 60);
  return buf;
}

std::string progress_text(const ProgressCounts& c) {
  std::string s = "batch: " + std::to_string(c.done);
  // A regular file that grew after it was counted: the count is a floor, never below what is done.
  if (c.total) s += "/" + std::to_string(std::max(*c.total, c.done));
  s += " done";
  if (c.from_journal > 0) s += " (" + std::to_string(c.from_journal) + " from the journal)";
  s += ", " + std::to_string(c.ok) + " ok, " + std::to_string(c.failed) + " failed, " + format_rate(c.rate.value_or(0)) +
       " items/s";
  if (c.total && c.rate && *c.rate > 0 && c.to_run > 0) s += ", ETA " + format_duration(double(c.to_run) / *c.rate);
  return s;
}

namespace {

std::string signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "signal " + std::to_string(sig);
  }
}

std::string items(std::uint64_t n) { return std::to_string(n) + (n == 1 ? " item" : " items"); }

}  // namespace

std::string interrupt_summary(const InterruptCounts& c) {
  std::uint64_t done = c.ok + c.failed;
  std::string s = "interrupted by " + signal_name(c.signal) + ": ";
  if (c.total) s += std::to_string(done) + " of " + items(*c.total) + " done";
  else s += items(done) + " done";
  s += " (" + std::to_string(c.ok) + " ok, " + std::to_string(c.failed) + " failed)";
  if (c.cancelled_running > 0) s += ", " + std::to_string(c.cancelled_running) + " cancelled while running";
  if (c.total) {
    std::uint64_t accounted = done + c.cancelled_running;
    s += ", " + std::to_string(*c.total > accounted ? *c.total - accounted : 0) + " not started";
  } else {
    s += "; the rest of the input was not started";
  }
  return s;
}

std::string run_summary(const RunCounts& c) {
  std::string s = "batch: " + items(c.items) + ", " + std::to_string(c.ok) + " ok, " + std::to_string(c.failed) + " failed";
  if (c.from_journal > 0) s += " (" + std::to_string(c.from_journal) + " from the journal)";
  s += ", in " + format_duration(c.seconds);
  std::uint64_t ran = c.items - std::min(c.items, c.from_journal);
  if (c.seconds > 0 && ran > 0) s += ", " + format_rate(double(ran) / c.seconds) + " items/s";
  if (c.no_bridges) s += "; no bridge left";
  return s;
}

std::string resume_command(const std::vector<std::string>& argv, const std::string& stdin_path) {
  std::string out = shell_command(argv);
  if (!stdin_path.empty()) out += " < " + shell_quote(stdin_path);
  return out;
}

}  // namespace tether::cli::batch
