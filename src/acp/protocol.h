// The ACP protocol version tether speaks, on both ends of a connection: what the client sends in
// initialize and accepts in its answer (acp/setup), what the built-in demo agent answers, and
// what a tether server answers its own clients. One constant, so that the ends cannot drift apart
// when a version 2 comes.
#pragma once

namespace tether::acp {

inline constexpr int kProtocolVersion = 1;

}  // namespace tether::acp
