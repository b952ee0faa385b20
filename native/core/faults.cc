// The faults build only (faults.h): the armed fault and what fired.
#include "core/faults.h"

#include <mutex>

namespace portwall::faults {

namespace {

struct Armed {
  bool on = false;
  std::string point;
  int nth = 1;
  int err = 0;
  int times = 1;
  int seen = 0;   // occurrences of the point since arm()
  int count = 0;  // how many fired
};

std::mutex mu;
Armed armed;
std::vector<Fired> log;
thread_local const char* phase = nullptr;

}  // namespace

void arm(const std::string& point, int nth, int err, int times) {
  std::lock_guard<std::mutex> lock(mu);
  armed = Armed{true, point, nth, err, times, 0, 0};
  log.clear();
}

void disarm() {
  std::lock_guard<std::mutex> lock(mu);
  armed.on = false;
}

std::vector<Fired> fired() {
  std::lock_guard<std::mutex> lock(mu);
  return log;
}

Phase::Phase(const char* name) : prev_(phase) { phase = name; }
Phase::~Phase() { phase = prev_; }

int at(const char* step) {
  if (!phase) return 0;
  const std::string point = std::string(phase) + "." + step;
  std::lock_guard<std::mutex> lock(mu);
  if (!armed.on || armed.point != point) return 0;
  const int n = ++armed.seen;
  if (n < armed.nth || (armed.times > 0 && armed.count >= armed.times)) return 0;
  ++armed.count;
  const int err = armed.err != 0 ? armed.err : 1;
  log.push_back(Fired{point, n, 0, armed.err});
  return err;
}

int pick(const char* point, int n, int* err) {
  std::lock_guard<std::mutex> lock(mu);
  if (!armed.on || armed.point != point || n <= 0 || armed.count > 0) return -1;
  const int k = armed.nth == 0 ? (n - 1) / 2 : armed.nth < 0 ? n - 1 : armed.nth - 1;
  if (k >= n) return -1;
  ++armed.count;
  *err = armed.err;
  log.push_back(Fired{point, k + 1, n, armed.err});
  return k;
}

}  // namespace portwall::faults
