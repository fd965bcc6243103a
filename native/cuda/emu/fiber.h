// Fibers for the CUDA emulator: a context switch that saves only what the C++ ABI says a call
// preserves (callee-saved registers, the stack pointer, the floating-point control words), in
// assembly on x86-64 and AArch64; ucontext elsewhere. glibc's swapcontext also saves the
// signal mask with a system call on every switch, which made the emulator spend half its time
// in the kernel.
#pragma once
#include <cstddef>

#if defined(__x86_64__) || defined(__aarch64__)
#define C3EMU_ASM_SWITCH 1
#else
#define C3EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace c3emu {

struct Context {
#if C3EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

// Prepares ctx to run entry(arg) on the stack [base, base + bytes) when first switched to.
// entry must never return: it ends by switching away for good.
void make_context(Context& ctx, char* base, size_t bytes, void (*entry)(void*), void* arg);

// Saves the running context into from and resumes to.
void switch_context(Context& from, Context& to);

}  // namespace c3emu
