// Clang thread-safety annotations. They document which lock guards which member; clang checks them
// with -Wthread-safety, other compilers read them as comments.
#pragma once

#if defined(__clang__)
#define TETHER_TSA(x) __attribute__((x))
#else
#define TETHER_TSA(x)
#endif

#define GUARDED_BY(x) TETHER_TSA(guarded_by(x))
#define REQUIRES(...) TETHER_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) TETHER_TSA(locks_excluded(__VA_ARGS__))
