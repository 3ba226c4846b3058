"""Probes for `pipeline`, run in the student's process. Each parameter names a student variable
(`inputs` is the check's fresh inputs); the returned dict is all its verdict sees.

Nothing a submission wrote is ever unpickled by the grader: files the student saved are read here,
in the student's process (with `weights_only=True`), and only their tensors cross over.
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

from autograder.probe_tools import figure_summary, watched_run

from .reference import BATCH_SIZE, OPTIMIZERS, bin_net, ck_net, loaded, mse_steps, te_net, val_net

NOT_DEFINED = "<not defined>"  # what the round trip probe reports for a missing `full_load_error`


# -- q1 ---------------------------------------------------------------------------------------
def datasets(XORDataset, SpiralDataset, n_batches_xor, n_batches_train, inputs) -> dict:
    """Every item of XORDataset() and of each SpiralDataset split, and a DataLoader's batches."""
    xor = XORDataset()
    xor_items = [xor[i] for i in range(len(xor))]
    splits = {}
    for split in ("train", "val", "test"):
        ds = SpiralDataset(split)
        items = [ds[i] for i in range(len(ds))]
        splits[split] = {"len": len(ds), "X": torch.stack([x for x, _ in items]),
                         "y": torch.stack([y for _, y in items])}
    loader = DataLoader(SpiralDataset("train"), batch_size=int(inputs["batch_size"]), shuffle=False)
    shapes = [(tuple(xb.shape), tuple(yb.shape)) for xb, yb in loader]
    return dict(xor_len=len(xor), xor_X=torch.stack([x for x, _ in xor_items]),
                xor_y=torch.stack([y for _, y in xor_items]), splits=splits, len_loader=len(loader),
                n_iterated=len(shapes), first_batch=[list(s) for s in shapes[0]],
                n_batches_xor=n_batches_xor, n_batches_train=n_batches_train)


# -- q2 ---------------------------------------------------------------------------------------
def optimizer_runs(optimize_with, rosenbrock, fig_opt, inputs) -> dict:
    """optimize_with for each optimizer from the grader's start, rosenbrock on its points, fig_opt."""
    start = (float(inputs["start"][0]), float(inputs["start"][1]))
    runs = {}
    for name, class_name, lr, kwargs in OPTIMIZERS:
        path, losses = optimize_with(getattr(optim, class_name), lr, start=start, **kwargs)
        runs[name] = {"path": np.asarray(path, dtype=np.float64), "losses": [float(v) for v in losses]}
    path, losses = optimize_with(optim.Adam, 1e-2)
    pts = torch.from_numpy(inputs["points"])
    return dict(runs=runs, default_path=np.asarray(path, dtype=np.float64), default_n=len(losses),
                rosen=rosenbrock(pts[:, 0], pts[:, 1]), figure=figure_summary(fig_opt))


# -- q4 ---------------------------------------------------------------------------------------
def roundtrip(model, new_model, inputs, full_load_error=NOT_DEFINED) -> dict:
    """Both models' outputs and weights, model_state.pth's tensors, and `full_load_error`."""
    x = inputs["x"]
    model.eval()
    new_model.eval()
    with torch.no_grad():
        out_model, out_new = model(x), new_model(x)
    # A whole-model file makes this load fail; its error is described by name, never shown raw.
    try:
        saved = torch.load("model_state.pth", weights_only=True)
        saved_error = ""
    except FileNotFoundError:
        saved, saved_error = None, "missing"
    except Exception as exc:  # noqa: BLE001 - whatever the student saved
        saved, saved_error = None, type(exc).__name__
    return dict(out_model=out_model, out_new=out_new, state=model.state_dict(), new_state=new_model.state_dict(),
                saved=dict(saved) if isinstance(saved, dict) else None, saved_type=type(saved).__name__,
                saved_error=saved_error, distinct=new_model is not model and all(
                    p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(), new_model.parameters())),
                full_load_error=full_load_error if isinstance(full_load_error, str) or full_load_error is None
                else f"<a {type(full_load_error).__name__}>")


# -- q6 ---------------------------------------------------------------------------------------
def checkpoint_resume(save_checkpoint, load_checkpoint, inputs) -> dict:
    """k steps, a checkpoint, k more steps; then a fresh model resumed from the checkpoint for k steps."""
    X, y, k = inputs["X"], inputs["y"], int(inputs["k"])

    def make(init):
        net = loaded(ck_net(), init)
        return net, torch.optim.Adam(net.parameters(), lr=float(inputs["lr"]))

    a, opt_a = make(inputs["init_a"])
    mse_steps(a, opt_a, X, y, k)
    save_checkpoint("probe_checkpoint.pth", a, opt_a, k)
    mse_steps(a, opt_a, X, y, k)
    b, opt_b = make(inputs["init_b"])
    epoch = load_checkpoint("probe_checkpoint.pth", b, opt_b)
    mse_steps(b, opt_b, X, y, k)
    return dict(uninterrupted=[p.detach().clone() for p in a.parameters()],
                resumed=[p.detach().clone() for p in b.parameters()], epoch=epoch)


# -- q7 ---------------------------------------------------------------------------------------
def _loader(inputs) -> DataLoader:
    return DataLoader(TensorDataset(inputs["X"], inputs["y"]), batch_size=BATCH_SIZE, shuffle=False)


def train_epoch_run(train_epoch, inputs) -> dict:
    """train_epoch on the grader's weights and points, the model left in eval mode before."""
    net = te_net()
    net.load_state_dict(inputs["init"])
    net.eval()
    loader = _loader(inputs)
    opt = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]))
    loss = train_epoch(net, loader, nn.CrossEntropyLoss(), opt, torch.device("cpu"))
    return dict(loss=loss, state=net.state_dict(), training=net.training)


def validate_run(validate, inputs) -> dict:
    """validate on the grader's weights and points, the model left in training mode before."""
    net = val_net()
    net.load_state_dict(inputs["init"])
    net.train()
    result = validate(net, _loader(inputs), nn.CrossEntropyLoss(), torch.device("cpu"))
    return dict(result=list(result), state=net.state_dict())


# -- q8 and q9: devices ---------------------------------------------------------------------------
def _meta_loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(8, 2), torch.randint(0, 3, (8,))), batch_size=4)


def _meta_net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)).to(torch.device("meta"))


def epoch_devices(train_epoch, validate, inputs) -> dict:
    """train_epoch and validate on the meta device; on a machine with a GPU, also a real run there."""
    meta = torch.device("meta")
    loader = _meta_loader()
    meta_runs = {}
    meta_runs["train_epoch"] = watched_run(
        lambda net, criterion: train_epoch(net, loader, criterion, torch.optim.SGD(net.parameters(), lr=0.1), meta),
        _meta_net(), F.cross_entropy)
    meta_runs["validate"] = watched_run(lambda net, criterion: validate(net, loader, criterion, meta),
                                        _meta_net(), F.cross_entropy)
    cuda = torch.cuda.is_available()
    gpu = None
    if cuda:
        gpu_device = torch.device("cuda")
        gnet = te_net()
        gnet.load_state_dict(inputs["init"])
        gnet = gnet.to(gpu_device)
        gloader = _loader(inputs)
        gopt = torch.optim.SGD(gnet.parameters(), lr=float(inputs["lr"]))
        gloss = train_epoch(gnet, gloader, nn.CrossEntropyLoss(), gopt, gpu_device)
        gval = validate(gnet, gloader, nn.CrossEntropyLoss(), gpu_device)
        gpu = {"loss": float(gloss), "state": {k: v.cpu() for k, v in gnet.state_dict().items()},
               "val": [float(v) for v in gval]}
    return dict(meta=meta_runs, cuda=cuda, gpu=gpu)


def set_device(pick_device) -> dict:
    """Hand-off after q8: `device = pick_device()` with the reference pick_device."""
    return {"device": pick_device()}


def pipeline(history, model) -> dict:
    """The history, the final weights and best_model.pth's tensors (read with weights_only=True)."""
    try:
        saved, saved_error = torch.load("best_model.pth", weights_only=True), ""
    except FileNotFoundError:
        saved, saved_error = None, "missing"
    except Exception as exc:  # noqa: BLE001 - a pickled model is reported by name
        saved, saved_error = None, type(exc).__name__
    return dict(history={k: [float(v) for v in history[k]] for k in ("train_loss", "val_loss", "val_acc")},
                state=model.state_dict(), saved=dict(saved) if isinstance(saved, dict) else None,
                saved_error=saved_error, n_params=sum(p.numel() for p in model.parameters()),
                n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


def train_model_devices(train_model) -> dict:
    """One epoch of train_model on the meta device."""
    meta = torch.device("meta")
    loader = _meta_loader()
    run = watched_run(lambda net, criterion: train_model(net, loader, loader, criterion,
                                                         torch.optim.SGD(net.parameters(), lr=0.1), epochs=1,
                                                         device=meta, patience=10, best_path="probe_best.pth"),
                      _meta_net(), F.cross_entropy)
    return dict(meta={"train_model": run})


# -- q10 --------------------------------------------------------------------------------------
def focal(focal_loss, inputs) -> dict:
    """Values and gradients for several gammas (float64), on large float32 logits, and gradcheck."""
    values, grads, dims = [], [], []
    for gamma in inputs["gammas"]:
        z = inputs["logits"].clone().requires_grad_(True)
        value = focal_loss(z, inputs["targets"], gamma=float(gamma))
        value.backward()
        values.append(value.detach())
        dims.append(value.dim())
        grads.append(z.grad.detach().clone())
    z = inputs["big_logits"].clone().requires_grad_(True)
    big = focal_loss(z, inputs["big_targets"], gamma=2.0)
    big.backward()
    small = inputs["small_logits"].clone().requires_grad_(True)
    try:
        ok = bool(torch.autograd.gradcheck(lambda s: focal_loss(s, inputs["small_targets"], gamma=1.5), (small,)))
        gc_error = ""
    except Exception as exc:  # noqa: BLE001 - the student's function may fail in any way
        ok, gc_error = False, type(exc).__name__ + ": " + str(exc)[:200]
    return dict(values=values, grads=grads, dims=dims, big_dim=big.dim(), big=big.detach(),
                big_grad=z.grad.detach().clone(), gradcheck=ok, gc_error=gc_error)


# -- q11 --------------------------------------------------------------------------------------
def adamw_run(run_adamw, inputs) -> dict:
    """run_adamw from the grader's starting point."""
    path, losses = run_adamw((float(inputs["start"][0]), float(inputs["start"][1])))
    return dict(path=np.asarray(path, dtype=np.float64), losses=[float(v) for v in losses])


# -- q12 --------------------------------------------------------------------------------------
def _item_ids(part) -> list:
    return [int(part[i][0]) for i in range(len(part))]


def splits(split_dataset, inputs) -> dict:
    """split_dataset on a data set whose items are their own indices: twice with one seed, once with another."""
    n, fraction = int(inputs["n"]), float(inputs["fraction"])
    runs = []
    for seed in (int(inputs["seed"]), int(inputs["seed"]), int(inputs["other_seed"])):
        train, val = split_dataset(TensorDataset(torch.arange(n)), fraction, seed=seed)
        runs.append({"train": _item_ids(train), "val": _item_ids(val)})
    return dict(runs=runs)


# -- q13 --------------------------------------------------------------------------------------
def binary_validate_run(validate_binary, inputs) -> dict:
    """validate_binary on the grader's weights and points, the model left in training mode before."""
    net = loaded(bin_net(), inputs["init"])
    net.train()
    loader = DataLoader(TensorDataset(inputs["X"], inputs["y"]), batch_size=BATCH_SIZE, shuffle=False)
    result = validate_binary(net, loader, nn.BCELoss(), torch.device("cpu"))
    return dict(result=[float(v) for v in result], state=net.state_dict())


def binary_outputs(binary_model, inputs) -> dict:
    """The trained binary classifier's outputs on the grader's fresh points (dropout off)."""
    binary_model.eval()
    with torch.no_grad():
        out = binary_model(inputs["X"].to(next(binary_model.parameters()).device))
    return dict(out=out.detach().cpu().float())


# -- q14 --------------------------------------------------------------------------------------
def _write_png(path, pixels) -> None:
    """An (H, W, 3) uint8 array as an 8-bit RGB PNG file (standard library only)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))  # filter 0 on every row
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def image_folder(ImageFolderDataset, inputs) -> dict:
    """The student's Dataset on a fresh folder the probe draws: root/<class>/img_<k>.png from the grader's
    pixels, and a notes.txt (not an image) in every class folder. Every item's shape, dtype, label, pixel sum."""
    root = tempfile.mkdtemp(prefix="probe_images_", dir=".")
    for name in inputs["classes"]:
        os.makedirs(os.path.join(root, name))
        for k, pixels in enumerate(inputs["images"][name]):
            _write_png(os.path.join(root, name, f"img_{k:02d}.png"), pixels)
        with open(os.path.join(root, name, "notes.txt"), "w") as handle:
            handle.write("not an image\n")
    dataset = ImageFolderDataset(root)
    items, item_error = [], ""
    try:
        for i in range(len(dataset)):
            items.append(dataset[i])
    except Exception as exc:  # noqa: BLE001 - e.g. PIL reading notes.txt; the verdict names the cause
        item_error = type(exc).__name__
    images = [torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x for x, _ in items]
    return dict(len=len(dataset), item_error=item_error, shapes=[list(x.shape) for x in images], dtypes=[str(x.dtype) for x in images],
                labels=[int(y) for _, y in items], sums=[float(x.double().sum()) for x in images])
