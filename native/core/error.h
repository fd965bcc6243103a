// Errors of the native core. Every failure is a C++ exception carrying the op name; the N-API
// layer turns it into a JS Error. Nothing in native/ calls exit() or abort().
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace c3 {

using Shape = std::vector<int64_t>;

// "[2, 3, 4]"
inline std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

class Error : public std::runtime_error {
 public:
  Error(const std::string& op, const std::string& msg) : std::runtime_error(op + ": " + msg), op_(op) {}
  const std::string& op() const { return op_; }

 private:
  std::string op_;
};

// Out of device or host memory: a distinct type so callers can tell it from a bad argument.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// check(cond, op, parts...) throws Error(op, concatenated parts) when cond is false.
template <typename... Parts>
inline void check(bool cond, const char* op, const Parts&... parts) {
  if (cond) return;
  std::ostringstream o;
  (o << ... << parts);
  throw Error(op, o.str());
}

}  // namespace c3
