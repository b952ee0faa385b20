// List: the kernel's nftables objects → a wire record stream (docs/wire.md, verb 0).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/byte_buffer.h"
#include "core/nft_socket.h"

namespace portwall::nft {

struct ListResult {
  uint32_t genid;      // the generation the records belong to
  ByteBuffer records;  // magic, count, records
};

// Tables of `family` (0 = all) named `table` ("" = all), each followed by its chains, its sets (each followed
// by one elements record) and its rules, all in kernel order. The several dumps this takes are one
// consistent snapshot: they are repeated while the generation id moves or the kernel flags a dump as
// interrupted (NLM_F_DUMP_INTR). With a `look`, a cheap one: tables and set definitions (all of them, or with
// named_sets_only just the sets of those names), with the elements of the sets named in elements_of only; no
// chains, no rules.
struct Look {
  std::vector<std::string> elements_of;
  bool named_sets_only = false;
};
ListResult list(const std::string& netns, uint8_t family, const std::string& table, const Look* look = nullptr);
// The same on an open socket (which a failure other than kNetlink may leave with replies queued).
ListResult list(NftSocket& sock, uint8_t family, const std::string& table, const Look* look = nullptr);

// The ruleset generation id (on an open socket: NftSocket::genid()).
uint32_t genid(const std::string& netns);

}  // namespace portwall::nft
