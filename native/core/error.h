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

// A shape as message text ("[2, 3, 4]"), formatted only when printed or made a string. Every op
// passes shape_str(...) among the parts of its checks, and arguments are evaluated whether the
// check fails or not: formatting eagerly (an ostringstream each) was a quarter of an op's host
// cost. It refers to the shape, so it lives only as long as the expression that made it.
class ShapeText {
 public:
  explicit ShapeText(const Shape& s) : s_(s) {}
  std::string str() const {
    std::string o = "[";
    for (size_t i = 0; i < s_.size(); ++i) {
      if (i) o += ", ";
      o += std::to_string(s_[i]);
    }
    return o + "]";
  }
  operator std::string() const { return str(); }

 private:
  const Shape& s_;
};

inline ShapeText shape_str(const Shape& s) { return ShapeText(s); }
inline std::ostream& operator<<(std::ostream& o, const ShapeText& t) { return o << t.str(); }
inline std::string operator+(std::string a, const ShapeText& b) { return a += b.str(); }
inline std::string operator+(const char* a, const ShapeText& b) { return std::string(a) + b.str(); }
inline std::string operator+(const ShapeText& a, const std::string& b) { return a.str() + b; }
inline std::string operator+(const ShapeText& a, const char* b) { return a.str() + b; }

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
