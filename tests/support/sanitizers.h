// Which sanitizer this test binary was built with, for g++ and clang alike: g++ defines
// __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__, clang answers __has_feature() instead (and defines
// neither), so a test that checks only the g++ macros silently takes the unsanitized path under
// clang. TETHER_TEST_ASAN / TETHER_TEST_TSAN are 1 or 0.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define TETHER_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TETHER_TEST_ASAN 1
#endif
#endif
#ifndef TETHER_TEST_ASAN
#define TETHER_TEST_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define TETHER_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TETHER_TEST_TSAN 1
#endif
#endif
#ifndef TETHER_TEST_TSAN
#define TETHER_TEST_TSAN 0
#endif
