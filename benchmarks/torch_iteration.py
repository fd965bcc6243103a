"""One official C3-GAN training iteration in PyTorch (CPU, or CUDA with --device cuda), timed: the side-by-side reference
for `c3gan bench --compare torch`. The architecture and step follow naver-ai/c3-gan (model.py,
base_layer.py, train.py), generalised to other sizes exactly as lib/model/spec.ts does.

usage: torch_iteration.py --size S --ngf N --ndf N --k K --batch B --threads T --runs R [--device cpu|cuda]
prints one JSON line: {"seconds": [...], "threads": T, "torch": version}
With --serve: builds the model, runs the warm-up iteration, prints {"ready": true, "threads": T,
"torch": version}, then for each line {"runs": R} on stdin times R iterations and prints
{"seconds": [...]} (so `c3gan bench --compare torch` alternates runs without re-spawning).
"""
import argparse, json, math, os, sys, time

ap = argparse.ArgumentParser()
for a, d in [("size", 32), ("ngf", 128), ("ndf", 32), ("k", 20), ("batch", 64), ("threads", 0), ("runs", 3),
             ("zdim", 64), ("czdim", 8)]:
    ap.add_argument("--" + a, type=int, default=d)
ap.add_argument("--serve", action="store_true")
ap.add_argument("--device", default="cpu")  # cuda: eager PyTorch with cuDNN at its default TF32 settings
args = ap.parse_args()
threads = args.threads or os.cpu_count()
from torch_setup import load_torch

torch, dev, sync = load_torch("torch_iteration.py", threads, args.device)
import torch.nn as nn
import torch.nn.functional as F

class GLU(nn.Module):
    def forward(self, x):
        n = x.size(1) // 2
        return x[:, :n] * torch.sigmoid(x[:, n:])

def up(i, o): return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(i, o * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(o * 2), GLU())
def same(i, o): return nn.Sequential(nn.Conv2d(i, o * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(o * 2), GLU())

class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, c * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(c * 2), GLU(), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
    def forward(self, x): return x + self.block(x)

n = int(math.log2(args.size // 4))
widths = [args.ngf // 2 ** i for i in range(1, n - 1)] + [args.ngf // 32] * 2
ngf, K, zd, cd = args.ngf, args.k, args.zdim, args.czdim
def fc(): return nn.Sequential(nn.Linear(zd, ngf * 32, bias=False), nn.BatchNorm1d(ngf * 32), GLU())

class G(nn.Module):
    def __init__(self):
        super().__init__()
        c = ngf
        bl = []
        for w in widths: bl.append(up(c, w)); c = w
        self.bg_fc, self.bg = fc(), nn.Sequential(*bl, *[Res(c) for _ in range(3)], nn.Conv2d(c, 3, 3, 1, 1, bias=False), nn.Tanh())
        c = ngf + cd
        fl = []
        for w in widths: fl.append(up(c, w)); c = w
        self.fg_fc = fc()
        self.emb = nn.Sequential(nn.Linear(K, cd * 4), nn.BatchNorm1d(cd * 4), GLU())
        self.base = nn.Sequential(*fl, *[Res(c) for _ in range(3)])
        self.to_mask = nn.Sequential(same(c, c), nn.Conv2d(c, 1, 3, 1, 1, bias=False))
        self.to_img = nn.Sequential(same(K + c, c), Res(c), Res(c), same(c, c), nn.Conv2d(c, 3, 3, 1, 1, bias=False), nn.Tanh())
    def forward(self, z, cz, c, grid):
        bg = self.bg(self.bg_fc(z).view(-1, ngf, 4, 4))
        e = self.emb(c)
        code = (e[:, :cd] + e[:, cd:].exp() * cz).view(-1, cd, 1, 1).repeat(1, 1, 4, 4)
        h = self.base(torch.cat((self.fg_fc(z).view(-1, ngf, 4, 4), code), 1))
        m = torch.sigmoid(self.to_mask(h))
        img = self.to_img(torch.cat((h, c.view(-1, K, 1, 1).repeat(1, 1, h.size(2), h.size(3))), 1))
        m = F.grid_sample(m, grid, align_corners=True)
        img = F.grid_sample(img, grid, align_corners=True)
        return m, bg * (1 - m) + img * m

class D(nn.Module):
    def __init__(self):
        super().__init__()
        ws = [args.ndf * min(2 ** i, 8) for i in range(n)]
        l = [nn.Conv2d(3, ws[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for a, b in zip(ws, ws[1:]): l += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        t = args.ndf * 8
        l += [nn.Conv2d(ws[-1], t, 3, 1, 1, bias=False), nn.BatchNorm2d(t), nn.LeakyReLU(0.2, True)]
        self.base = nn.Sequential(*l)
        self.info = nn.Sequential(nn.Conv2d(t, t, 3, 1, 1, bias=False), nn.BatchNorm2d(t), nn.LeakyReLU(0.2, True), nn.Conv2d(t, t, 4, 4))
        self.rf = nn.Conv2d(t, 1, 4, 4)
        self.cent = nn.Linear(K, t)
    def forward(self, x): h = self.base(x); return self.info(h).flatten(1), self.rf(h).flatten(1)

netG, netD = G().to(dev), D().to(dev)
oG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
oD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
B, S, T = args.batch, args.size, 0.1
eye = torch.eye(K, device=dev)

def codes():
    c = torch.zeros(B, K, device=dev)
    idx = torch.randperm(K, device=dev)[:B] if K >= B else torch.randint(0, K, (B,), device=dev)
    c[torch.arange(B, device=dev), idx] = 1
    return torch.randn(B, zd, device=dev), torch.randn(B, cd, device=dev), c, idx

def grid():
    e = lambda: torch.empty(B, 1, device=dev)
    s = e().uniform_(0.8, 1.5); r = e().uniform_(-15, 15) / 180 * math.pi
    tx = e().uniform_(-0.15, 0.15); ty = e().uniform_(-0.15, 0.15)
    th = torch.cat([s * r.cos(), -s * r.sin(), tx, s * r.sin(), s * r.cos(), ty], 1).view(B, 2, 3)
    return F.affine_grid(th, (B, 3, S, S), align_corners=True)

def cos_logits(f, c): return F.normalize(f, dim=1) @ F.normalize(c, dim=1).T / T

def iteration():
    real, aug = torch.rand(B, 3, S, S, device=dev) * 2 - 1, torch.rand(B, 3, S, S, device=dev) * 2 - 1
    z, cz, c, idx = codes()
    m, fake = netG(z, cz, c, grid())
    oD.zero_grad()
    ri, ra = netD(real); fi, fa = netD(fake.detach()); cemb = netD.cent(eye); mi, _ = netD((m * fake).detach()); ai, _ = netD(aug)
    feat = F.normalize(torch.cat([ri, ai]), dim=1); sim = feat @ feat.T
    mask = torch.eye(2 * B, dtype=torch.bool, device=dev); sim = sim[~mask].view(2 * B, -1) / T
    pos = torch.cat([torch.arange(B - 1, 2 * B - 1, device=dev), torch.arange(0, B, device=dev)])
    p = F.softmax(cos_logits(ri, cemb), 1)
    loss = F.relu(1 - ra).mean() + F.relu(1 + fa).mean() + 5 * F.cross_entropy(cos_logits(fi, cemb), idx) \
        + F.cross_entropy(cos_logits(mi, cemb), idx) + F.cross_entropy(sim, pos) \
        - 0.1 * (p * p.log()).sum(1).mean() + 0.1 * (p.mean(0) * p.mean(0).log()).sum()
    loss.backward(); oD.step()
    z, cz, c, idx = codes()
    m, fake = netG(z, cz, c, grid())
    oG.zero_grad()
    fi, fa = netD(fake); cemb = netD.cent(eye); mi, _ = netD(m * fake)
    mm = m.view(B, -1).mean(1)
    be = -m * torch.log2(m + 1e-6) - (1 - m) * torch.log2(1 - m + 1e-6)
    loss = -fa.mean() + 5 * F.cross_entropy(cos_logits(fi, cemb), idx) + F.cross_entropy(cos_logits(mi, cemb), idx) \
        + F.relu(0.1 - mm).mean() + F.relu(mm - 0.9).mean() + be.mean()
    loss.backward(); oG.step()

def timed(runs):
    times = []
    for _ in range(runs):
        sync(); t0 = time.perf_counter(); iteration(); sync(); times.append(time.perf_counter() - t0)
    return times

iteration()  # warm-up
if args.serve:
    print(json.dumps({"ready": True, "threads": threads, "torch": torch.__version__, "device": args.device}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps({"seconds": timed(int(json.loads(line).get("runs", 1)))}), flush=True)
else:
    print(json.dumps({"seconds": timed(args.runs), "threads": threads, "torch": torch.__version__}))
