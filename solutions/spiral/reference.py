"""The reference the spiral checks compare with: the prompt's SpiralNet, its training run and the
two-step SGD pattern of `train_step`. Imports only numpy and torch: hand-offs send SpiralNet's own
source into the sandbox."""
from __future__ import annotations

import torch
import torch.nn as nn

PATIENCE = 200
N_EPOCHS = 5000
STEP_LR = 0.1
STEP_HIDDEN = 16


class SpiralNet(nn.Module):
    """Reference architecture: (N, 2) -> logits (N, 3)."""

    def __init__(self, n_hidden=100, dropout=0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, n_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(n_hidden, 3))

    def forward(self, x):
        return self.net(x)


def step_net() -> nn.Sequential:
    """The small network `train_step` is tried on."""
    return nn.Sequential(nn.Linear(2, STEP_HIDDEN), nn.ReLU(), nn.Linear(STEP_HIDDEN, 3))


def train_step(model, X, y, criterion, optimizer) -> float:
    """The prompt's five-step pattern: forward, loss, zero_grad, backward, step."""
    loss = criterion(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def as_float(loss) -> float:
    """A step's returned loss (a float, or a tensor that may still require grad) as a float."""
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


def reference_steps(inputs: dict, step) -> tuple[list[float], list[dict]]:
    """Two SGD steps of `step` on the grader's network and batches.

    The probe runs it with the student's `train_step`, the verdict with the reference's. No
    default: a probe must never carry the reference step into the student's process.
    """
    net = step_net()
    net.load_state_dict(inputs["init"])
    opt = torch.optim.SGD(net.parameters(), lr=STEP_LR)
    losses, states = [], []
    for X, y in inputs["batches"]:
        loss = step(net, X, y, nn.CrossEntropyLoss(), opt)
        losses.append(as_float(loss))
        states.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return losses, states


def train_reference(ref: dict, seed: int = 42, *, make_model=SpiralNet, step=train_step) -> dict:
    """The prompt's training run: Adam, early stopping on the validation loss, best weights restored.

    Calibration trains realistic mistakes with the same loop: another `make_model` (a softmax at
    the end) or another `step` (no zero_grad). `last_state` holds the weights of the last epoch.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = make_model()
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.005)
        train_losses, val_losses, best_val_loss, best_epoch, best_state = [], [], float("inf"), 0, None
        for epoch in range(N_EPOCHS):
            model.train()
            train_losses.append(as_float(step(model, ref["X_train"], ref["y_train"], criterion, optimizer)))
            model.eval()
            with torch.no_grad():
                val_losses.append(criterion(model(ref["X_val"]), ref["y_val"]).item())
            if val_losses[-1] < best_val_loss:
                best_val_loss, best_epoch = val_losses[-1], epoch
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            if epoch - best_epoch >= PATIENCE:
                break
        last_state = {k: v.clone() for k, v in model.state_dict().items()}
    finally:
        torch.random.set_rng_state(generator_state)
    return {"train_losses": train_losses, "val_losses": val_losses, "best_epoch": best_epoch,
            "best_val_loss": best_val_loss, "best_state": best_state, "last_state": last_state}
