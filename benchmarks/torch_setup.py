"""The shared start of the PyTorch side-by-side scripts (torch_iteration.py, torch_ops.py): thread
variables set before torch loads its OpenMP and BLAS, the same settings c3gan bench gives them
(torchEnv in lib/bench/torch.ts), and the device checked."""
import os, sys


def load_torch(script, threads, device):
    """Returns (torch, device, sync) with `threads` threads; exits naming `script` on a bad device."""
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, str(threads))
    # libgomp's default spin-then-sleep waits whole scheduler slices on an oversubscribed machine;
    # set before torch loads libgomp
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if device not in ("cpu", "cuda"):
        sys.exit(f"{script}: --device must be cpu or cuda, got {device}")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{script}: --device cuda, but this torch has no usable CUDA")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return torch, torch.device(device), sync
