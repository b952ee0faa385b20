// Send: one encoded nftables batch → the kernel, as one atomic transaction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace portwall::nft {

struct CommitResult {
  uint32_t genid;     // ruleset generation read right after the commit
  uint32_t messages;  // netlink messages sent, BEGIN and END included
};

// Sends `len` bytes (BEGIN … END, consecutive sequence numbers, as nft_encode.h makes them) in a single sendmsg and
// drains every acknowledgement. On failure the kernel has aborted the whole transaction; the error thrown is
// the first refused message's (lowest sequence number), kind kNetlink, with op_index
//   record_of_message[i] when a map is given (the wire record; -1 for BEGIN/END), else the message index i.
// Malformed bytes throw kWire; socket trouble (including ENOBUFS: acknowledgements lost) throws kSystem.
CommitResult send_batch(const std::string& netns, const uint8_t* bytes, size_t len,
                        const std::vector<int32_t>* record_of_message);

}  // namespace portwall::nft
