"""Calibrate the spiral test-accuracy threshold over torch seeds.

Runs the solution and two realistic mistakes (softmax at the end, best state not restored) for N
seeds (default 30) and prints min/mean/max test accuracy.  Usage: python tools/calibrate_spiral.py [N]
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autograder.data import load_spiral  # noqa: E402
torch.set_num_threads(1)
parts = load_spiral()
T = {k: (torch.tensor(X), torch.tensor(y)) for k, (X, y) in parts.items()}
class SpiralNet(nn.Module):
    def __init__(self, n_hidden=100, dropout=0.2, softmax=False):
        super().__init__()
        layers = [nn.Linear(2, n_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(n_hidden, 3)]
        if softmax: layers.append(nn.Softmax(dim=1))
        self.net = nn.Sequential(*layers)
    def forward(self, x): return self.net(x)
def run(seed, softmax=False, restore=True):
    torch.manual_seed(seed)
    model = SpiralNet(softmax=softmax)
    crit = nn.CrossEntropyLoss(); opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.005)
    (Xtr, ytr), (Xv, yv), (Xte, yte) = T["train"], T["val"], T["test"]
    best, be, bs = float("inf"), 0, None; n=0
    for epoch in range(5000):
        model.train(); loss = crit(model(Xtr), ytr); opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        with torch.no_grad(): vl = crit(model(Xv), yv).item()
        if vl < best: best, be, bs = vl, epoch, {k: v.clone() for k, v in model.state_dict().items()}
        n = epoch
        if epoch - be >= 200: break
    if restore: model.load_state_dict(bs)
    model.eval()
    with torch.no_grad(): acc = (model(Xte).argmax(1) == yte).float().mean().item()
    return acc, be, n, best
out = {}
for variant in [("solution", False, True), ("softmax", True, True), ("norestore", False, False)]:
    accs, losses = [], []
    t = time.time()
    for seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        acc, be, n, best = run(seed, variant[1], variant[2])
        accs.append(acc)
        losses.append(best)
    out[variant[0]] = accs
    print(variant[0], "test accuracy min %.4f mean %.4f max %.4f;" % (min(accs), np.mean(accs), max(accs)),
          "best val loss min %.4f mean %.4f max %.4f" % (min(losses), np.mean(losses), max(losses)),
          "%.1fs" % (time.time() - t), flush=True)
print(json.dumps({k: [round(a, 4) for a in v] for k, v in out.items()}))
