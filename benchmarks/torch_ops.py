"""The per-op rows of `c3gan bench --ops` in PyTorch: the same shapes, passes and timing rules, so
`--compare torch` can print c3gan / PyTorch ratios measured side by side in one run.

Each pass calls the ATen function PyTorch's own autograd calls in training, with tensors made once:
  conv   forward F.conv2d; backward-data / backward-weight aten.convolution_backward with only
         grad_input / grad_weight asked for (autograd's call; torch.nn.grad.conv2d_* take other paths)
  bn     aten.native_batch_norm (training) and aten.native_batch_norm_backward (dx, dgamma, dbeta)
  glu    F.glu over dim 1 and aten.glu_backward (the fused kernels; the official model's GLU is
         x[:, :n] * sigmoid(x[:, n:]), which autograd runs as slice + sigmoid + mul: slower)
  leaky_relu  F.leaky_relu(0.2) and aten.leaky_relu_backward
  add / mul   a + b, a * b; backward of a broadcast operand: dy.sum_to_size(b)
  copy   x.clone()
A conv row with const_channels > 0 (the image head, which c3gan runs as conv2dConstChannels) is
timed as the plain conv over all c channels: what PyTorch runs on the concatenated input.

usage:
  torch_ops.py --threads T [--device cpu|cuda] --serve   one JSON request a line on stdin, one reply a
                                                         line on stdout, after a {"ready": ...} line
  torch_ops.py --threads T [--device cpu|cuda] < rows.json   a JSON list of requests (or {"rows": [...]});
                                                         prints one JSON document {"torch":..., "rows": [...]}
  torch_ops.py --threads T --row '{"kind": ...}'           one request from the command line
request: {"id": str, "kind": "conv"|"bn"|"glu"|"leaky_relu"|"add"|"mul"|"copy",
          "conv": {"n","c","h","w","k","r","stride","pad","bias","const_channels"}   (conv)
          "shape": [...], "b": [...]                                              (others; b: binary rhs)
          "passes": ["forward", ...], "timing": {"warmup": 1, "minRuns": 3, "minSeconds": 0.1}}
reply:   {"id": str, "passes": [{"name", "runs", "median", "min", "max", "total"}]} or {"id", "error"}
"""
import argparse, json, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--device", default="cpu")
ap.add_argument("--serve", action="store_true")
ap.add_argument("--row", default=None)
args = ap.parse_args()
threads = args.threads or os.cpu_count()
from torch_setup import load_torch

torch, dev, sync = load_torch("torch_ops.py", threads, args.device)
import torch.nn.functional as F

aten = torch.ops.aten


def randn(shape, std=1.0):
    return torch.randn(*shape, device=dev) * std


def conv_passes(s):
    n, c, h, w, k, r = s["n"], s["c"], s["h"], s["w"], s["k"], s["r"]
    stride, pad = [s["stride"]] * 2, [s["pad"]] * 2
    oh = (h + 2 * s["pad"] - r) // s["stride"] + 1
    ow = (w + 2 * s["pad"] - r) // s["stride"] + 1
    x = randn([n, c, h, w])
    wt = randn([k, c, r, r], (c * r * r) ** -0.5)
    bias = randn([k], 0.1) if s["bias"] else None
    dy = randn([n, k, oh, ow])
    bsizes = [k] if s["bias"] else None
    bw = lambda mask: aten.convolution_backward(dy, x, wt, bsizes, stride, pad, [1, 1], False, [0, 0], 1, mask)
    return {
        "forward": lambda: F.conv2d(x, wt, bias, stride, pad),
        "backward-data": lambda: bw([True, False, False]),
        "backward-weight": lambda: bw([False, True, False]),
    }


def bn_passes(shape):
    c = shape[1]
    x, dy = randn(shape), randn(shape)
    g, b = torch.ones(c, device=dev), torch.zeros(c, device=dev)
    rm, rv = torch.zeros(c, device=dev), torch.ones(c, device=dev)
    _, mean, invstd = aten.native_batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5)
    return {
        "forward": lambda: aten.native_batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5),
        "backward": lambda: aten.native_batch_norm_backward(dy, x, g, rm, rv, mean, invstd, True, 1e-5, [True, True, True]),
    }


def glu_passes(shape):
    x = randn(shape)
    dy = randn([shape[0], shape[1] // 2] + list(shape[2:]))
    return {"forward": lambda: F.glu(x, 1), "backward": lambda: aten.glu_backward(dy, x, 1)}


def leaky_passes(shape):
    x, dy = randn(shape), randn(shape)
    return {"forward": lambda: F.leaky_relu(x, 0.2), "backward": lambda: aten.leaky_relu_backward(dy, x, 0.2, False)}


def binary_passes(op, a_shape, b_shape):
    a, b = randn(a_shape), randn(b_shape)
    f = torch.add if op == "add" else torch.mul
    return {"forward": lambda: f(a, b), "backward": lambda: a.sum_to_size(b_shape)}


def copy_passes(shape):
    x = randn(shape)
    return {"forward": lambda: x.clone()}


def passes_for(req):
    kind = req["kind"]
    if kind == "conv":
        return conv_passes(req["conv"])
    if kind == "bn":
        return bn_passes(req["shape"])
    if kind == "glu":
        return glu_passes(req["shape"])
    if kind == "leaky_relu":
        return leaky_passes(req["shape"])
    if kind in ("add", "mul"):
        return binary_passes(kind, req["shape"], req["b"])
    if kind == "copy":
        return copy_passes(req["shape"])
    raise ValueError(f"unknown kind {kind!r}")


def time_it(run, t):
    """lib/bench/stats.ts timeIt: warm-up runs, then until >= minRuns runs and >= minSeconds."""
    for _ in range(int(t["warmup"])):
        run()
        sync()
    samples, total = [], 0.0
    while len(samples) < int(t["minRuns"]) or total < float(t["minSeconds"]):
        t0 = time.perf_counter()
        run()
        sync()
        dt = time.perf_counter() - t0
        samples.append(dt)
        total += dt
    s = sorted(samples)
    m = len(s) // 2
    med = s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
    return {"runs": len(s), "median": med, "min": s[0], "max": s[-1], "total": total}


def handle(req):
    rid = req.get("id", "") if isinstance(req, dict) else ""
    try:
        fns = passes_for(req)
        out = []
        with torch.no_grad():
            for name in req["passes"]:
                if name not in fns:
                    raise ValueError(f"kind {req['kind']!r} has no pass {name!r} (has {sorted(fns)})")
                out.append(dict(name=name, **time_it(fns[name], req["timing"])))
        return {"id": rid, "passes": out}
    except Exception as e:  # reported per row: the caller names the row and stops
        return {"id": rid, "error": f"{type(e).__name__}: {e}"}


info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
        "mkldnn": bool(torch.backends.mkldnn.is_available())}
if args.serve:
    print(json.dumps(dict(ready=True, **info)), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(handle(json.loads(line))), flush=True)
elif args.row is not None:
    print(json.dumps(dict(rows=[handle(json.loads(args.row))], **info)))
else:
    doc = json.load(sys.stdin)
    rows = doc["rows"] if isinstance(doc, dict) else doc
    print(json.dumps(dict(rows=[handle(r) for r in rows], **info)))
