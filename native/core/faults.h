// Fault injection for tests: compiled only into the faults build (binding.gyp pw_faults=1, which defines
// PORTWALL_FAULTS); the product addon contains none of it. docs/reliability.md, "Fault injection", lists the
// points and what each one does to a commit or a dump.
//
// One fault is armed at a time, for the whole process. Socket-level points are named by the exchange the
// calling thread is in (a Phase: "commit", "dump", "genid") and the step ("send", "recv", "intr"), e.g.
// "commit.send"; positional points ("encode", "commit.reject", "commit.ack") pick one item of n.
#pragma once

#ifdef PORTWALL_FAULTS

#include <string>
#include <vector>

namespace portwall::faults {

struct Fired {
  std::string point;
  int index;  // the occurrence (socket points, from 1) or the item (positional points, from 1)
  int of;     // positional points: how many items there were; 0 otherwise
  int err;
};

// nth >= 1: the nth occurrence (socket points) or the nth item (positional points); positional points also
// take 0 (the middle item) and -1 (the last). times: how many occurrences in a row fire (0: all from nth on);
// positional points fire once.
void arm(const std::string& point, int nth, int err, int times);
void disarm();
std::vector<Fired> fired();

// The exchange the calling thread is in, for the socket-level points; restores the previous one on exit.
class Phase {
 public:
  explicit Phase(const char* name);
  ~Phase();
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;

 private:
  const char* prev_;
};

// Socket-level point "<phase>.<step>": the errno to fail this step with (or, for "intr", non-zero to
// flag the message), 0 when nothing fires. Outside any phase nothing fires.
int at(const char* step);

// Positional point over n items: the 0-based item to act on, or -1. *err gets the armed errno (0 if none).
int pick(const char* point, int n, int* err);

}  // namespace portwall::faults

#endif  // PORTWALL_FAULTS
