// Context switches for the emulator's fibers (fiber.h).
#include "fiber.h"

#include <pthread.h>

#include <cstdint>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define C3EMU_ASAN 1
#else
#define C3EMU_ASAN 0
#endif

namespace c3emu {

namespace {
void raw_switch(Context& from, Context& to);
}
void unpoison_stack(char* base, size_t bytes);

void init_thread_context(Context& ctx) {
  pthread_attr_t attr;
  void* base = nullptr;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &base, &size);
    pthread_attr_destroy(&attr);
  }
  ctx.stack_base = base;
  ctx.stack_size = size;
}

// A reused stack may still carry the redzones of frames a faulted fiber never left.
void unpoison_stack(char* base, size_t bytes) {
#if C3EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(base, bytes);
#else
  (void)base, (void)bytes;
#endif
}

void fiber_entered() {
#if C3EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

void switch_context(Context& from, Context& to) {
#if C3EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, to.stack_base, to.stack_size);
#endif
  raw_switch(from, to);
#if C3EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void exit_to(Context& from, Context& to) {
#if C3EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, to.stack_base, to.stack_size);
#endif
  raw_switch(from, to);
  __builtin_unreachable();  // nothing switches back to an exited fiber
}

}  // namespace c3emu

#if C3EMU_ASM_SWITCH
extern "C" {
// c3emu_switch(void** save_sp, void* new_sp): pushes the callee-saved state, stores the stack
// pointer into *save_sp, loads new_sp and pops the state saved there.
void c3emu_switch(void** save_sp, void* new_sp);
// First code a new fiber runs: calls entry(arg) from the registers make_context filled.
void c3emu_trampoline();
}

#if defined(__x86_64__)
// Frame, from the saved stack pointer up: x87 control word (8 bytes), MXCSR (8), r15, r14, r13,
// r12, rbx, rbp, return address.
asm(R"(
  .text
  .p2align 4
  .globl c3emu_switch
  .type c3emu_switch, @function
c3emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr 8(%rsp)
  fldcw (%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size c3emu_switch, .-c3emu_switch

  .p2align 4
  .globl c3emu_trampoline
  .type c3emu_trampoline, @function
c3emu_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size c3emu_trampoline, .-c3emu_trampoline
  .section .note.GNU-stack,"",@progbits
  .text
)");
#else  // __aarch64__
// Frame (176 bytes): x19..x28, x29, x30 (the return address), d8..d15, FPCR.
asm(R"(
  .text
  .p2align 4
  .globl c3emu_switch
  .type c3emu_switch, %function
c3emu_switch:
  sub sp, sp, #176
  stp x19, x20, [sp, #0]
  stp x21, x22, [sp, #16]
  stp x23, x24, [sp, #32]
  stp x25, x26, [sp, #48]
  stp x27, x28, [sp, #64]
  stp x29, x30, [sp, #80]
  stp d8, d9, [sp, #96]
  stp d10, d11, [sp, #112]
  stp d12, d13, [sp, #128]
  stp d14, d15, [sp, #144]
  mrs x9, fpcr
  str x9, [sp, #160]
  mov x9, sp
  str x9, [x0]
  mov sp, x1
  ldp x19, x20, [sp, #0]
  ldp x21, x22, [sp, #16]
  ldp x23, x24, [sp, #32]
  ldp x25, x26, [sp, #48]
  ldp x27, x28, [sp, #64]
  ldp x29, x30, [sp, #80]
  ldp d8, d9, [sp, #96]
  ldp d10, d11, [sp, #112]
  ldp d12, d13, [sp, #128]
  ldp d14, d15, [sp, #144]
  ldr x9, [sp, #160]
  msr fpcr, x9
  add sp, sp, #176
  ret
  .size c3emu_switch, .-c3emu_switch

  .p2align 4
  .globl c3emu_trampoline
  .type c3emu_trampoline, %function
c3emu_trampoline:
  mov x0, x19
  blr x20
  brk #0
  .size c3emu_trampoline, .-c3emu_trampoline
  .section .note.GNU-stack,"",%progbits
  .text
)");
#endif

namespace c3emu {

void make_context(Context& ctx, char* base, size_t bytes, void (*entry)(void*), void* arg) {
  ctx.stack_base = base;
  ctx.stack_size = bytes;
  unpoison_stack(base, bytes);
  const uintptr_t top = (reinterpret_cast<uintptr_t>(base) + bytes) & ~uintptr_t(15);
#if defined(__x86_64__)
  // after c3emu_switch's ret the stack pointer is top - 16, 16-byte aligned as a call needs
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 88);
  std::memset(sp, 0, 88);
  sp[0] = 0x037f;  // x87 control word: the default (round to nearest, all exceptions masked)
  sp[1] = 0x1f80;  // MXCSR: the default
  sp[2] = 0;                                             // r15
  sp[3] = 0;                                             // r14
  sp[4] = reinterpret_cast<uint64_t>(entry);             // r13
  sp[5] = reinterpret_cast<uint64_t>(arg);               // r12
  sp[6] = 0;                                             // rbx
  sp[7] = 0;                                             // rbp
  sp[8] = reinterpret_cast<uint64_t>(&c3emu_trampoline);  // return address
#else
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 176);
  std::memset(sp, 0, 176);
  sp[0] = reinterpret_cast<uint64_t>(arg);                // x19
  sp[1] = reinterpret_cast<uint64_t>(entry);              // x20
  sp[11] = reinterpret_cast<uint64_t>(&c3emu_trampoline);  // x30
#endif
  ctx.sp = sp;
}

namespace {
void raw_switch(Context& from, Context& to) { c3emu_switch(&from.sp, to.sp); }
}  // namespace

}  // namespace c3emu

#else  // ucontext

namespace c3emu {

namespace {
// makecontext passes int arguments only: the two pointers travel as 32-bit halves
void start(unsigned eh, unsigned el, unsigned ah, unsigned al) {
  auto join = [](unsigned h, unsigned l) { return (static_cast<uintptr_t>(h) << 32) | l; };
  reinterpret_cast<void (*)(void*)>(join(eh, el))(reinterpret_cast<void*>(join(ah, al)));
}
}  // namespace

void make_context(Context& ctx, char* base, size_t bytes, void (*entry)(void*), void* arg) {
  ctx.stack_base = base;
  ctx.stack_size = bytes;
  unpoison_stack(base, bytes);
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = base;
  ctx.uc.uc_stack.ss_size = bytes;
  ctx.uc.uc_link = nullptr;
  const uint64_t e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&ctx.uc, reinterpret_cast<void (*)()>(start), 4, static_cast<unsigned>(e >> 32),
              static_cast<unsigned>(e), static_cast<unsigned>(a >> 32), static_cast<unsigned>(a));
}

namespace {
void raw_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
}  // namespace

}  // namespace c3emu

#endif
