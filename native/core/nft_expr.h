// Rule expressions: wire ⇄ libnftnl (docs/wire.md "Expressions").
#pragma once

#include <cstdio>  // libnftnl headers use FILE without including <stdio.h>
#include <libnftnl/expr.h>

#include <string>

#include "core/nft_handles.h"
#include "core/wire.h"

namespace portwall::nft {

// Expression type numbers of the wire.
enum ExprType : uint8_t {
  kPayload = 1, kMeta, kCt, kCmp, kBitwise, kRange, kLookup, kImmediate, kCounter, kLog, kNat, kLimit,
  kNotrack, kReject, kMasq, kRedir, kByteorder,
  // Dump only: an expression the wire has no type for, kept by name and raw attributes so a diff still sees it.
  kOther = 255,
};

// A lookup's dreg slot: 0 is the verdict register (vmaps), so "no dreg" needs its own value.
constexpr uint8_t kNoLookupDreg = 255;
// A ct expression's dir slot when the direction is not set.
constexpr uint8_t kCtDirUnset = 255;

// Reads one expression and builds the libnftnl object for it.
ExprPtr read_expr(wire::Reader& r);

// Appends one dumped expression to a record stream.
void write_expr(wire::Writer& w, nftnl_expr* e);

// Checks a verdict's chain: present exactly for jump and goto (libnftnl also frees it only for those).
void check_verdict_chain(wire::Reader& r, int32_t code, const std::string& chain, const char* what);

// Rejects a key/data value longer than libnftnl's fixed 64-byte value registers (it would overflow them).
void check_value_len(wire::Reader& r, const wire::Bytes& b, const char* what);

}  // namespace portwall::nft
