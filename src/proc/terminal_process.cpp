#include "proc/terminal_process.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

namespace tether::proc {
namespace {

// While a stop is under way, how often the group is looked at: members that are not our
// children announce nothing when they die.
constexpr auto kSweepEvery = std::chrono::milliseconds(20);
// After SIGKILL, how long a member may take to go (a process in uninterruptible sleep) before
// tick() stops looking; the destructor waits for it once more.
constexpr auto kKillWait = std::chrono::seconds(2);
constexpr std::size_t kChunk = 65536;

}  // namespace

std::variant<std::unique_ptr<TerminalProcess>, SpawnError> TerminalProcess::start(SpawnOptions spawn,
                                                                                  std::size_t output_limit) {
  spawn.stdin_null = true;
  spawn.merge_stderr = true;
  spawn.new_session = true;  // no controlling terminal: see SpawnOptions::new_session
  ChildFds fds;
  auto r = Child::spawn(spawn, fds);
  if (auto* err = std::get_if<SpawnError>(&r)) return std::move(*err);
  auto& child = std::get<Child>(r);
  register_group(child.pgid());
  return std::unique_ptr<TerminalProcess>(
      new TerminalProcess(std::move(child), std::move(fds.stdout_r), std::move(fds.pidfd), output_limit));
}

TerminalProcess::~TerminalProcess() {
  if (done_) return;
  // The leader is not reaped yet (it is kept until the group is gone), so the group id is still
  // this group's.
  child_->signal_group(SIGKILL);
  auto until = base::Deadline::after(kKillWait);
  while (sweep_group(pid_, pid_) > 0 && !until.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  unregister_group(pid_);
  child_->reap();
}

std::string TerminalProcess::pump(std::size_t budget) {
  // The exit first: what the leader wrote before it is in the pipe by then, and is read below.
  note_exit();
  std::string fresh;
  char chunk[kChunk];
  while (out_ && fresh.size() < budget) {
    ssize_t n = ::read(out_.get(), chunk, sizeof chunk);
    if (n > 0) {
      fresh.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      out_.reset();  // every writer is gone
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) out_.reset();
      break;
    }
  }
  keep(fresh);
  return fresh;
}

void TerminalProcess::note_exit() {
  if (status_ || !pidfd_) return;
  if (auto st = child_->peek_exit()) {
    status_ = st;
    pidfd_.reset();  // it stays readable from now on
  }
}

// Keeps the last limit_ bytes. The buffer may grow to about twice the limit before it is cut back
// to it, so that a long flood costs a copy per limit's worth of output, not per read.
void TerminalProcess::keep(std::string_view bytes) {
  if (bytes.empty()) return;
  buf_.append(bytes);
  if (buf_.size() > limit_) truncated_ = true;
  if (buf_.size() > 2 * limit_ + kChunk) buf_.erase(0, buf_.size() - limit_);
}

std::string_view TerminalProcess::output() const {
  std::string_view v(buf_);
  if (v.size() > limit_) v.remove_prefix(v.size() - limit_);
  // Cut at the front: start on a character boundary (skip the rest of a cut UTF-8 sequence, at
  // most three continuation bytes; output that is not UTF-8 is the JSON encoder's to replace).
  if (truncated_)
    for (int i = 0; i < 3 && !v.empty() && (static_cast<unsigned char>(v.front()) & 0xC0) == 0x80; ++i)
      v.remove_prefix(1);
  return v;
}

void TerminalProcess::stop(base::Duration grace) {
  if (stopping_ || done_) return;
  stopping_ = true;
  child_->signal_group(SIGTERM);
  child_->signal_group(SIGCONT);
  kill_at_ = base::Clock::now() + grace;
}

bool TerminalProcess::tick() {
  if (done_) return true;
  if (!stopping_) return false;
  note_exit();
  const auto now = base::Clock::now();
  if (status_ && sweep_group(pid_, pid_) == 0) {
    finish();
    return true;
  }
  if (!killed_ && now >= kill_at_) {
    child_->signal_group(SIGKILL);
    killed_ = true;
    give_up_at_ = now + kKillWait;
  }
  return false;
}

void TerminalProcess::finish() {
  unregister_group(pid_);  // before the reap frees the id
  child_->reap();          // a zombie by now: does not block
  child_.reset();
  done_ = true;
}

base::Deadline TerminalProcess::next_deadline() const {
  if (done_ || !stopping_) return base::Deadline::never();
  const auto now = base::Clock::now();
  if (killed_ && now >= give_up_at_) return base::Deadline::never();  // left to the destructor
  auto next = now + kSweepEvery;
  if (!killed_ && kill_at_ < next) next = kill_at_;
  return base::Deadline::at(next);
}

}  // namespace tether::proc
