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
  // the stack's bounds, for AddressSanitizer's fiber annotations
  const void* stack_base = nullptr;
  size_t stack_size = 0;
};

// The calling thread's own stack bounds into ctx (the context that runs the fibers).
void init_thread_context(Context& ctx);

// Prepares ctx to run entry(arg) on the stack [base, base + bytes) when first switched to.
// entry must call fiber_entered() first and never return: it ends with exit_to.
void make_context(Context& ctx, char* base, size_t bytes, void (*entry)(void*), void* arg);
void fiber_entered();

// Saves the running context into from and resumes to.
void switch_context(Context& from, Context& to);
// The same for a fiber that will never run again.
[[noreturn]] void exit_to(Context& from, Context& to);

}  // namespace c3emu
