// The process-wide thread pool behind parallel_for: num_threads()-1 workers plus the caller.
// A call splits [0, n) into contiguous chunks of >= grain items (at most a few per thread); the
// caller and the workers take chunks from a shared counter. Calls made from inside a chunk (or
// while the pool is busy with another thread's call) run serially on the calling thread, so
// nesting never deadlocks.
//
// Waiting spins briefly before it sleeps: the model runs thousands of short ops per iteration
// (a batch norm on a small layer takes tens of microseconds), and a futex wake-up costs several
// microseconds plus the scheduler's latency each time. Workers spin for C3GAN_SPIN_US
// microseconds (default 50, 0: never) after their last job, the caller likewise while its
// workers finish; past that they block on condition variables, so an idle pool takes no CPU.
#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "error.h"

namespace c3 {
namespace {

constexpr int kMaxThreads = 256;
// Chunks are claimed from a shared counter, so a few per thread let the others finish the work
// of a thread that the OS wakes late (the machine is often shared).
constexpr int64_t kChunksPerThread = 4;

// True while this thread runs a chunk of some parallel_for: nested calls then run serially.
thread_local bool t_in_parallel = false;

// How long a waiting thread spins before it sleeps (C3GAN_SPIN_US, microseconds).
int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* e = std::getenv("C3GAN_SPIN_US");
    const long us = e ? std::strtol(e, nullptr, 10) : 50;
    return int64_t(std::clamp<long>(us, 0, 100000)) * 1000;
  }();
  return ns;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until ready() or spin_ns() have passed; returns ready()'s last answer.
template <class Ready>
bool spin_until(Ready ready) {
  const int64_t budget = spin_ns();
  if (budget <= 0) return ready();
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count() > budget)
      return ready();
  }
}

int default_threads() {
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(std::min<unsigned>(hc, kMaxThreads));
}

// One parallel_for call; lives on the caller's stack until every worker that joined has left.
struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n;
  int64_t chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> users{0};  // workers inside run(); changed under Pool::mu
  std::mutex err_mu;
  std::exception_ptr error;

  // Runs chunks until none are left.
  void run() {
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> g(err_mu);
        if (!error) error = std::current_exception();
      }
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
};

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }

  int size() const { return threads_.load(); }

  void resize(int threads) {
    // Waits for a call in progress on another thread, then swaps the workers.
    std::lock_guard<std::mutex> busy(submit_mu_);
    stop();
    start(threads);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    // another thread's call holds the workers: run this one on the caller alone
    std::unique_lock<std::mutex> busy(submit_mu_, std::try_to_lock);
    int threads = busy.owns_lock() ? threads_.load() : 1;
    int64_t chunks = threads > 1 ? std::min<int64_t>(kChunksPerThread * threads, n / grain) : 1;
    if (chunks <= 1) {
      if (busy.owns_lock()) busy.unlock();
      serial(n, fn);
      return;
    }
    Job job;
    job.fn = &fn;
    job.n = n;
    job.chunks = chunks;
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    // sleepers_ is raised under mu_ before a worker waits, so one that missed the new
    // generation is counted here and woken
    if (sleepers_.load() > 0) wake_.notify_all();
    t_in_parallel = true;
    job.run();
    t_in_parallel = false;
    auto finished = [&] { return job.users.load() == 0 && job.done.load() == job.chunks; };
    spin_until(finished);
    {
      std::unique_lock<std::mutex> g(mu_);
      if (!finished()) {
        caller_waiting_ = true;
        finished_.wait(g, finished);
        caller_waiting_ = false;
      }
      job_ = nullptr;  // under mu_: a worker arriving late finds no job to join
    }
    if (job.error) std::rethrow_exception(job.error);
  }

  static void serial(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    struct Restore {
      bool was = t_in_parallel;
      ~Restore() { t_in_parallel = was; }
    } restore;
    t_in_parallel = true;
    fn(0, n);
  }

 private:
  void start(int threads) {
    threads_ = threads;
    quit_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void worker() {
    t_in_parallel = true;
    uint64_t seen;
    {
      std::lock_guard<std::mutex> g(mu_);
      seen = generation_.load();
    }
    for (;;) {
      Job* job;
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || quit_.load(); });
      {
        std::unique_lock<std::mutex> g(mu_);
        auto woken = [&] { return quit_.load() || generation_.load() != seen; };
        if (!woken()) {
          ++sleepers_;
          wake_.wait(g, woken);
          --sleepers_;
        }
        if (quit_) return;
        seen = generation_.load();
        job = job_;
        if (!job) continue;  // woke after that call had already finished
        ++job->users;
      }
      job->run();
      bool notify;
      {
        std::lock_guard<std::mutex> g(mu_);
        --job->users;
        notify = caller_waiting_;
      }
      if (notify) finished_.notify_all();
    }
  }

  std::mutex submit_mu_;  // held by the one call that uses the workers
  std::mutex mu_;         // guards job_, generation_, quit_, Job::users
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;                       // guarded by mu_
  std::atomic<uint64_t> generation_{0};      // written under mu_; read while spinning
  std::atomic<bool> quit_{false};            // written under mu_
  std::atomic<int> sleepers_{0};             // workers blocked on wake_; changed under mu_
  bool caller_waiting_ = false;              // the caller blocks on finished_; guarded by mu_
  std::atomic<int> threads_{1};  // written only under submit_mu_
};

// Never destroyed: worker threads blocked at process exit are harmless, while a destroyed pool
// could still be reached from other static destructors.
Pool& pool() {
  static Pool* p = new Pool(default_threads());
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  if (t_in_parallel) throw Error("set_num_threads", "cannot resize the thread pool from inside a parallel_for");
  // n <= 0 restores the default (one thread per core)
  int t = n <= 0 ? default_threads() : std::min(n, kMaxThreads);
  Pool& p = pool();
  if (p.size() != t) p.resize(t);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (t_in_parallel || n < 2 * grain) {
    Pool::serial(n, fn);
    return;
  }
  pool().run(n, grain, fn);
}

}  // namespace c3
