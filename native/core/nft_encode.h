// Compile: a wire batch (docs/wire.md) → one nftables netlink batch, BEGIN … END.
//
// Encoding is kept apart from sending so that a benchmark can replay already encoded bytes and measure the
// kernel alone (see nft_commit.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/byte_buffer.h"

namespace portwall::nft {

// Message types newer than some distributions' <linux/netfilter/nf_tables.h> (kernel ≥ 6.3).
enum : uint16_t {
  kMsgDestroyTable = 26,
  kMsgDestroyChain = 27,
  kMsgDestroyRule = 28,
  kMsgDestroySet = 29,
  kMsgDestroySetElem = 30,
};

struct EncodedBatch {
  // Netlink messages back to back, with consecutive sequence numbers starting at first_seq.
  ByteBuffer bytes;
  // For every message, the index of the wire record it came from; -1 for BEGIN and END.
  // One record may own several messages (large element lists) or none (an empty element list).
  std::vector<int32_t> record_of_message;
};

// Throws Error(kWire) with the offending record as op_index when the buffer is malformed.
// `genid` != 0 makes the batch conditional: BEGIN carries NFNL_BATCH_GENID and the kernel refuses the whole
// batch (ERESTART, on BEGIN) if the ruleset is no longer at that generation. 0 sends no attribute; the kernel
// would read a 0 as "no check" anyway, and never reports generation 0.
EncodedBatch encode(const uint8_t* data, size_t len, uint32_t genid = 0);

}  // namespace portwall::nft
