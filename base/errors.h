#pragma once
// Setup-path errors carry context; the IO path uses negative errno (see Result).
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace ublkrdma {

// Thrown at setup and CLI boundaries only. `errno_value` is positive (0 if not an errno).
class SetupError : public std::runtime_error {
 public:
  SetupError(std::string what, int errno_value = 0)
      : std::runtime_error(std::move(what)), errno_value_(errno_value) {}
  int errno_value() const { return errno_value_; }

 private:
  int errno_value_;
};

// "what: strerror (errno N)" with `err` positive or negative.
inline std::string errno_text(int err) {
  if (err < 0) err = -err;
  return fmt::format("{} (errno {})", std::strerror(err), err);
}

template <typename... Args>
[[noreturn]] void throw_errno(int err, fmt::format_string<Args...> f, Args&&... args) {
  if (err < 0) err = -err;
  throw SetupError(fmt::format("{}: {}", fmt::format(f, std::forward<Args>(args)...), errno_text(err)), err);
}

template <typename... Args>
[[noreturn]] void throw_setup(fmt::format_string<Args...> f, Args&&... args) {
  throw SetupError(fmt::format(f, std::forward<Args>(args)...));
}

// A value or a negative errno: the IO path's error channel (no exceptions there).
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  static Result error(int neg_errno) { return Result(Err{neg_errno < 0 ? neg_errno : -neg_errno}); }
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  int error() const { return ok() ? 0 : std::get<1>(v_).code; }

 private:
  struct Err { int code; };
  explicit Result(Err e) : v_(e) {}
  std::variant<T, Err> v_;
};

}  // namespace ublkrdma
