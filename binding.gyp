{
  "variables": {
    "pw_libs": "libmnl libnftnl libipset libnetfilter_conntrack",
    "pw_werror%": "<!(node -p \"process.env.PORTWALL_WERROR === '1' ? 1 : 0\")",
    # 1: AddressSanitizer + UBSan build for scripts/memcheck.sh (configure -- -Dpw_sanitize=1); never shipped.
    "pw_sanitize%": 0,
    # 1: the fault-injection build for test/kernel/faults.test.ts (scripts/memcheck.sh faults-build); never shipped.
    "pw_faults%": 0
  },
  "targets": [
    {
      "target_name": "portwall",
      "sources": [
        "native/binding/addon.cc",
        "native/binding/async.cc",
        "native/core/netns.cc",
        "native/core/wire.cc",
        "native/core/nft_expr.cc",
        "native/core/nft_encode.cc",
        "native/core/nft_socket.cc",
        "native/core/nft_commit.cc",
        "native/core/nft_dump.cc",
        "native/core/nl_socket.cc",
        "native/core/ipset.cc",
        "native/core/conntrack.cc",
        "native/core/conntrack_events.cc",
        "native/core/event_socket.cc",
        "native/core/nft_events.cc",
        "native/core/nflog.cc",
        "native/core/nft_trace.cc",
        "native/binding/nft_binding.cc",
        "native/binding/ipset_binding.cc",
        "native/binding/conntrack_binding.cc",
        "native/binding/nft_events_binding.cc",
        "native/binding/subscription.cc",
        "native/binding/nflog_binding.cc",
        "native/binding/nft_trace_binding.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_CPP_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["<!@(pkg-config --cflags <(pw_libs))"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["<!@(pkg-config --libs <(pw_libs))"],
      "conditions": [
        ["pw_werror==1", { "cflags_cc": ["-Werror"] }],
        ["pw_faults==1", {
          "defines": ["PORTWALL_FAULTS"],
          "sources": ["native/core/faults.cc", "native/binding/faults_binding.cc"]
        }],
        ["pw_sanitize==1", {
          "defines": ["PORTWALL_SANITIZE"],
          # vptr needs RTTI, which node's common.gypi turns off; every other UBSan check aborts at once.
          "cflags": ["-fsanitize=address,undefined", "-fno-sanitize=vptr", "-fno-sanitize-recover=all",
                     "-fno-omit-frame-pointer", "-g"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    }
  ]
}
