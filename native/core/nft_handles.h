// Owning handles for libnftnl objects: each is freed exactly once, also when an exception unwinds.
//
// libnftnl's "add" calls (nftnl_rule_add_expr, nftnl_set_elem_add, nftnl_set_add_expr, ...) take ownership,
// so callers hand an object over with release() right at that call and never earlier.
#pragma once

#include <cstdio>  // libnftnl headers use FILE without including <stdio.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <cerrno>
#include <memory>
#include <string>

#include "core/error.h"

namespace portwall::nft {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const { Free(p); }
};

using TablePtr = std::unique_ptr<nftnl_table, Deleter<nftnl_table_free>>;
using ChainPtr = std::unique_ptr<nftnl_chain, Deleter<nftnl_chain_free>>;
using RulePtr = std::unique_ptr<nftnl_rule, Deleter<nftnl_rule_free>>;
using SetPtr = std::unique_ptr<nftnl_set, Deleter<nftnl_set_free>>;
using ElemPtr = std::unique_ptr<nftnl_set_elem, Deleter<nftnl_set_elem_free>>;
using ExprPtr = std::unique_ptr<nftnl_expr, Deleter<nftnl_expr_free>>;
using GenPtr = std::unique_ptr<nftnl_gen, Deleter<nftnl_gen_free>>;
using ExprIterPtr = std::unique_ptr<nftnl_expr_iter, Deleter<nftnl_expr_iter_destroy>>;

// libnftnl allocators return NULL only when out of memory.
template <typename Ptr, typename Raw>
Ptr checked(Raw* raw, const char* what) {
  if (raw == nullptr) throw Error(ErrorKind::kSystem, ENOMEM, std::string("allocating ") + what + ": out of memory");
  return Ptr(raw);
}

inline TablePtr make_table() { return checked<TablePtr>(nftnl_table_alloc(), "nftnl_table"); }
inline ChainPtr make_chain() { return checked<ChainPtr>(nftnl_chain_alloc(), "nftnl_chain"); }
inline RulePtr make_rule() { return checked<RulePtr>(nftnl_rule_alloc(), "nftnl_rule"); }
inline SetPtr make_set() { return checked<SetPtr>(nftnl_set_alloc(), "nftnl_set"); }
inline ElemPtr make_elem() { return checked<ElemPtr>(nftnl_set_elem_alloc(), "nftnl_set_elem"); }
inline GenPtr make_gen() { return checked<GenPtr>(nftnl_gen_alloc(), "nftnl_gen"); }
// Unknown names return NULL too, but callers only pass the fixed names of docs/wire.md.
inline ExprPtr make_expr(const char* name) { return checked<ExprPtr>(nftnl_expr_alloc(name), name); }

}  // namespace portwall::nft
