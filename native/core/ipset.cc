#include "core/ipset.h"

#include <libipset/ipset.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <exception>
#include <mutex>

#include "core/error.h"
#include "core/netns.h"

namespace portwall::ipset {
namespace {

std::mutex& library_mutex() {
  static std::mutex m;
  return m;
}

// Opens a session whose socket lives in `netns`; the caller holds the library lock.
struct ipset_session* open_session(const std::string& netns, Socket* owner, ipset_print_outfn print) {
  static std::once_flag types;
  std::call_once(types, ipset_load_types);
  NetnsScope scope(netns);
  struct ipset_session* s = ipset_session_init(print, owner);
  if (!s) throw Error(ErrorKind::kSystem, ENOMEM, "ipset_session_init: out of memory");
  // libipset opens the session's socket at its first command, not in ipset_session_init: make that command
  // happen here, inside the namespace, so that the socket is bound to it for good. A header query changes
  // nothing (and fails harmlessly when no set has that name).
  ipset_data_set(ipset_session_data(s), IPSET_SETNAME, "portwall-open");
  ipset_cmd(s, IPSET_CMD_HEADER, 0);
  bool unopened = std::strstr(ipset_session_report_msg(s), "Cannot open session") != nullptr;
  ipset_session_report_reset(s);
  ipset_data_reset(ipset_session_data(s));
  if (unopened) {
    ipset_session_fini(s);
    throw Error(ErrorKind::kSystem, EIO, "ipset: cannot open a netlink socket in the namespace");
  }
  return s;
}

}  // namespace

Socket::Socket(const std::string& netns) : netns_(netns) {
  std::lock_guard<std::mutex> lock(library_mutex());
  s_ = open_session(netns_, this, &Socket::print);
}

Socket::~Socket() {
  std::lock_guard<std::mutex> lock(library_mutex());
  if (s_) ipset_session_fini(s_);  // closes the socket and clears the set-name cache
}

struct ipset_session* Socket::session() {
  if (!s_) throw Error(ErrorKind::kSystem, EBADF, "ipset: the session could not be reopened after a failed call");
  return s_;
}

void Socket::reopen() noexcept {
  // Called from Session's destructor, which holds the library lock.
  if (s_) ipset_session_fini(s_);
  s_ = nullptr;
  try {
    s_ = open_session(netns_, this, &Socket::print);
  } catch (...) {
    // Left closed: the next call throws kSystem, and a held socket is then replaced.
  }
}

int Socket::print(struct ipset_session*, void* p, const char* fmt, ...) {
  auto* self = static_cast<Socket*>(p);
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    size_t at = self->out_.size();
    self->out_.resize(at + static_cast<size_t>(n) + 1);
    std::vsnprintf(&self->out_[at], static_cast<size_t>(n) + 1, fmt, ap2);
    self->out_.resize(at + static_cast<size_t>(n));
  }
  va_end(ap2);
  return n;
}

namespace {

uint8_t nfproto(uint8_t family) { return family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4; }

// One call's use of a Socket's libipset session: the library lock held throughout, and nothing left over from
// an earlier call — the set-name cache (process-wide, and blind to namespaces) cleared, the session's data,
// report, environment options and output reset.
class Session {
 public:
  explicit Session(Socket& sock)
      : lock_(library_mutex()), sock_(sock), s_(sock.session()), unwinding_(std::uncaught_exceptions()) {
    ipset_cache_fini();
    ipset_data_reset(data());
    ipset_session_report_reset(s_);
    ipset_envopt_unset(s_, IPSET_ENV_EXIST);
    ipset_envopt_unset(s_, IPSET_ENV_LIST_HEADER);
    sock_.output().clear();
  }
  // A call that failed leaves no half-built bulk message behind for the socket's next call.
  ~Session() {
    if (std::uncaught_exceptions() > unwinding_) sock_.reopen();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  struct ipset_session* get() { return s_; }
  ipset_data* data() { return ipset_session_data(s_); }
  std::string& output() { return sock_.output(); }

  void set(ipset_opt opt, const void* value) {
    if (ipset_data_set(data(), opt, value) < 0)
      throw Error(ErrorKind::kWire, EINVAL, "libipset refused option " + std::to_string(opt));
  }

  // Runs a command; on failure throws with libipset's report (and `err` when the cause is known).
  void run(enum ipset_cmd cmd, const std::string& what, uint32_t lineno = 0, int err = 0) {
    ipset_session_report_reset(s_);
    if (ipset_cmd(s_, cmd, lineno) < 0) fail(what, err);
  }
  void commit(const std::string& what) {
    if (ipset_commit(s_) < 0) fail(what, 0);
  }

  [[noreturn]] void fail(const std::string& what, int err) {
    std::string msg = ipset_session_report_msg(s_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    ipset_session_report_reset(s_);
    throw Error(ErrorKind::kNetlink, err, what + ": " + (msg.empty() ? "refused by the kernel" : msg));
  }

  // True if the set exists; leaves the session's data empty.
  bool exists(const std::string& name) {
    ipset_data_reset(data());
    set(IPSET_SETNAME, name.c_str());
    bool found = ipset_cmd(s_, IPSET_CMD_HEADER, 0) == 0;
    ipset_session_report_reset(s_);
    ipset_data_reset(data());
    return found;
  }
  void require(const std::string& name) {
    if (!exists(name)) throw Error(ErrorKind::kNetlink, ENOENT, "ipset " + name + ": no such set");
  }

  // The kernel's type and family of an existing set (left in the session's data, as ADT commands need).
  const ipset_type* resolve(const std::string& name, enum ipset_cmd cmd) {
    ipset_data_reset(data());
    set(IPSET_SETNAME, name.c_str());
    ipset_session_report_reset(s_);
    const ipset_type* t = ipset_type_get(s_, cmd);
    if (!t) {
      bool missing = std::strstr(ipset_session_report_msg(s_), "does not exist") != nullptr;
      fail("ipset " + name, missing ? ENOENT : 0);
    }
    return t;
  }

 private:
  std::unique_lock<std::mutex> lock_;
  Socket& sock_;
  struct ipset_session* s_;
  const int unwinding_;
};

// Checks members against the set before anything is sent, so that a bad one changes nothing.
void check_members(const ipset_type* t, uint8_t set_family, const std::string& name,
                   const std::vector<Member>& members) {
  bool wants_iface = std::strcmp(t->name, "hash:net,iface") == 0;
  for (size_t i = 0; i < members.size(); ++i) {
    const Member& m = members[i];
    if (nfproto(m.family) != set_family)
      throw Error(ErrorKind::kNetlink, EAFNOSUPPORT,
                  "ipset " + name + ": member " + std::to_string(i) + " is not of the set's address family",
                  static_cast<int>(i));
    if (wants_iface != !m.iface.empty())
      throw Error(ErrorKind::kNetlink, EINVAL,
                  "ipset " + name + ": member " + std::to_string(i) +
                      (wants_iface ? " needs an interface" : " may not name an interface"),
                  static_cast<int>(i));
  }
}

void put_member(Session& s, const std::string& name, const ipset_type* t, uint8_t family, const Member& m) {
  s.set(IPSET_SETNAME, name.c_str());
  s.set(IPSET_OPT_TYPE, t);
  s.set(IPSET_OPT_FAMILY, &family);
  nf_inet_addr ip{};
  std::memcpy(&ip, m.addr, m.family == 6 ? 16 : 4);
  s.set(IPSET_OPT_IP, &ip);
  if (m.cidr) s.set(IPSET_OPT_CIDR, &m.cidr);
  if (!m.iface.empty()) s.set(IPSET_OPT_IFACE, m.iface.c_str());
}

void adt(Socket& sock, const std::string& name, const std::vector<Member>& members, enum ipset_cmd cmd) {
  Session s(sock);
  const ipset_type* t = s.resolve(name, cmd);
  const uint8_t family = ipset_data_family(s.data());
  check_members(t, family, name, members);
  // Added members that exist and deleted members that are absent are not errors: the call is idempotent.
  ipset_envopt_set(s.get(), IPSET_ENV_EXIST);
  const char* verb = cmd == IPSET_CMD_ADD ? "ipset add to " : "ipset del from ";
  for (size_t i = 0; i < members.size(); ++i) {
    put_member(s, name, t, family, members[i]);
    // A line number puts libipset in restore mode, where it packs consecutive members into one message.
    s.run(cmd, verb + name, static_cast<uint32_t>(i + 1));
  }
  s.commit(verb + name);
}

}  // namespace

void create(Socket& sock, const CreateOptions& o) {
  Session s(sock);
  if (s.exists(o.name)) throw Error(ErrorKind::kNetlink, EEXIST, "ipset " + o.name + ": a set of that name exists");
  uint8_t family = nfproto(o.family);
  s.set(IPSET_SETNAME, o.name.c_str());
  s.set(IPSET_OPT_TYPENAME, o.type.c_str());
  s.set(IPSET_OPT_FAMILY, &family);
  if (!ipset_type_get(s.get(), IPSET_CMD_CREATE)) s.fail("ipset create " + o.name, EINVAL);
  if (o.hashsize) s.set(IPSET_OPT_HASHSIZE, &o.hashsize);
  if (o.maxelem) s.set(IPSET_OPT_MAXELEM, &o.maxelem);
  if (o.timeout) s.set(IPSET_OPT_TIMEOUT, &o.timeout);
  if (o.counters) s.set(IPSET_OPT_COUNTERS, nullptr);
  if (o.comment) s.set(IPSET_OPT_CREATE_COMMENT, nullptr);
  s.run(IPSET_CMD_CREATE, "ipset create " + o.name);
}

void destroy(Socket& sock, const std::string& name) {
  Session s(sock);
  s.require(name);
  s.set(IPSET_SETNAME, name.c_str());
  s.run(IPSET_CMD_DESTROY, "ipset destroy " + name);
}

void flush(Socket& sock, const std::string& name) {
  Session s(sock);
  s.require(name);
  s.set(IPSET_SETNAME, name.c_str());
  s.run(IPSET_CMD_FLUSH, "ipset flush " + name);
}

void rename(Socket& sock, const std::string& from, const std::string& to) {
  Session s(sock);
  s.require(from);
  if (s.exists(to)) throw Error(ErrorKind::kNetlink, EEXIST, "ipset " + to + ": a set of that name exists");
  s.set(IPSET_SETNAME, from.c_str());
  s.set(IPSET_OPT_SETNAME2, to.c_str());
  s.run(IPSET_CMD_RENAME, "ipset rename " + from);
}

void swap(Socket& sock, const std::string& a, const std::string& b) {
  Session s(sock);
  s.require(a);
  s.require(b);
  s.set(IPSET_SETNAME, a.c_str());
  s.set(IPSET_OPT_SETNAME2, b.c_str());
  s.run(IPSET_CMD_SWAP, "ipset swap " + a + " " + b);
}

void add(Socket& sock, const std::string& name, const std::vector<Member>& members) {
  adt(sock, name, members, IPSET_CMD_ADD);
}

void del(Socket& sock, const std::string& name, const std::vector<Member>& members) {
  adt(sock, name, members, IPSET_CMD_DEL);
}

std::vector<uint8_t> test(Socket& sock, const std::string& name, const std::vector<Member>& members) {
  Session s(sock);
  const ipset_type* t = s.resolve(name, IPSET_CMD_TEST);
  const uint8_t family = ipset_data_family(s.data());
  check_members(t, family, name, members);
  std::vector<uint8_t> found(members.size(), 0);
  // The kernel answers a test with the message's error code, so tests cannot be packed: one round trip each.
  for (size_t i = 0; i < members.size(); ++i) {
    put_member(s, name, t, family, members[i]);
    ipset_session_report_reset(s.get());
    if (ipset_cmd(s.get(), IPSET_CMD_TEST, 0) == 0) {
      found[i] = 1;
    } else if (ipset_session_report_type(s.get()) != IPSET_NOTICE) {  // NOTICE: "is NOT in set"
      s.fail("ipset test " + name, 0);
    }
  }
  return found;
}

std::string list(Socket& sock, const std::string& name, bool headers_only) {
  Session s(sock);
  if (!name.empty()) {
    s.require(name);
    s.set(IPSET_SETNAME, name.c_str());
  }
  if (headers_only) ipset_envopt_set(s.get(), IPSET_ENV_LIST_HEADER);
  ipset_session_output(s.get(), IPSET_LIST_PLAIN);
  s.run(IPSET_CMD_LIST, "ipset list " + name);
  return std::move(s.output());
}

}  // namespace portwall::ipset
