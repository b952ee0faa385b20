// Send: one encoded nftables batch → the kernel, as one atomic transaction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/nft_socket.h"

namespace portwall::nft {

struct CommitResult {
  uint32_t genid;     // ruleset generation read right after the commit
  uint32_t messages;  // netlink messages sent, BEGIN and END included
};

// Sends `len` bytes (BEGIN … END, consecutive sequence numbers, as nft_encode.h makes them) in a single sendmsg on
// `sock` and drains every acknowledgement. On failure the kernel has aborted the whole transaction; the error
// thrown is the first refused message's (lowest sequence number), kind kNetlink, with op_index
//   record_of_message[i] when a map is given (the wire record; -1 for BEGIN/END), else the message index i.
// A BEGIN carrying NFNL_BATCH_GENID (encode's genid) that no longer matches the ruleset's generation is
// refused as ERESTART on BEGIN: op_index -1 with a map, 0 without. After a kNetlink error every reply has
// been read, so the socket serves the next request as it is.
// Malformed bytes throw kWire before anything is sent; socket trouble (including ENOBUFS: acknowledgements
// lost, ETIMEDOUT, and EBADMSG: an acknowledgement too short to read) throws kSystem and may leave replies
// queued: such a socket should be closed. After kSystem the kernel may or may not have applied the batch.
CommitResult send_batch(NftSocket& sock, const uint8_t* bytes, size_t len,
                        const std::vector<int32_t>* record_of_message);

// The same on a socket opened in `netns` for this one batch.
CommitResult send_batch(const std::string& netns, const uint8_t* bytes, size_t len,
                        const std::vector<int32_t>* record_of_message);

}  // namespace portwall::nft
