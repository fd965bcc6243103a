#!/usr/bin/python3
"""The official C3-GAN training data pipeline in torchvision (PIL), timed: training pairs per second.

Called by benchmarks/data.bench.ts with the same list, image size, batch size and worker count as
the c3gan loader it is compared with. Prints one JSON line. Run with Debian's python3.

  --cache  decodes every image once before timing (shorter side reduced to --cache-size with PIL's
           bilinear resize), the equivalent of c3gan's decode cache; forked workers share it.
"""
import argparse
import json
import os
import resource
import time

import torch
import torch.utils.data as data
import torchvision.transforms as transforms
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--root", required=True, help="data folder with trainset.txt and images/")
p.add_argument("--size", type=int, default=128)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--workers", type=int, default=0)
p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch), each reported")
p.add_argument("--cache", action="store_true")
p.add_argument("--cache-size", type=int, default=192)
args = p.parse_args()

torch.set_num_threads(1)
S = args.size


class Pairs(data.Dataset):
    """datasets.py of naver-ai/c3-gan, prepare_training_pairs"""

    def __init__(self, root):
        self.transform = transforms.Compose([transforms.Resize(S), transforms.RandomCrop(S),
                                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                             transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
        self.transform_aug = transforms.Compose([
            transforms.RandomResizedCrop(S, scale=(0.2, 1.0)), transforms.RandomHorizontalFlip(),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.RandomGrayscale(0.2), transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
        with open(os.path.join(root, "trainset.txt")) as f:
            lines = [l.rstrip("\r\n") for l in f if l.strip()]
        self.paths = [os.path.join(root, "images", l.rsplit(" ", 1)[0]) for l in lines]
        self.cache = None

    def build_cache(self, size):
        self.cache = []
        for p in self.paths:
            img = Image.open(p).convert("RGB")
            self.cache.append(transforms.Resize(size)(img) if min(img.size) > size else img)

    def __getitem__(self, i):
        img = self.cache[i] if self.cache is not None else Image.open(self.paths[i]).convert("RGB")
        return self.transform(img), self.transform_aug(img)

    def __len__(self):
        return len(self.paths)


ds = Pairs(args.root)
if args.cache:
    ds.build_cache(args.cache_size)
# workers are not persistent: each epoch's workers exit at its end, so their CPU time is counted
loader = data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers)


def epoch():
    n = 0
    for real, aug in loader:
        n += real.shape[0]
    return n


def cpu():
    # this process (all threads) and its finished children (the epoch's workers)
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


epoch()  # warm-up: page cache
out = {"pairs": [], "seconds": [], "cpuSeconds": [], "workers": args.workers, "cache": args.cache}
for _ in range(args.epochs):
    t, c = time.perf_counter(), cpu()
    out["pairs"].append(epoch())
    out["seconds"].append(time.perf_counter() - t)
    out["cpuSeconds"].append(cpu() - c)
print(json.dumps(out))
