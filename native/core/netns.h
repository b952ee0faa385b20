// Network namespace entry for the calling thread, undone on scope exit.
//
// setns(CLONE_NEWNET) affects only the calling thread, and a netlink socket stays bound to the namespace it
// was created in. So I/O runs on a worker thread inside a NetnsScope: sockets are opened (and, for libraries
// that open their own sockets, whole operations run) inside the scope, and the thread is back in its original
// namespace when the scope ends, even on exceptions.
#pragma once

#include <string>

namespace portwall {

// "" = the current namespace; a value containing '/' is a path (e.g. /proc/123/ns/net);
// anything else is a name under /run/netns (as `ip netns add` creates).
std::string netns_path(const std::string& netns);

class NetnsScope {
 public:
  explicit NetnsScope(const std::string& netns);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int saved_fd_ = -1;  // our original namespace; -1 when no switch was needed
};

}  // namespace portwall
