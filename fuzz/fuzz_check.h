#pragma once
// What a fuzz target asserts with: a failed property names itself on stderr and traps, which
// libFuzzer reports as a crash and saves the input for (crash-<sha1>).
#include <cstdio>

#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                                      \
    }                                                                                        \
  } while (0)
