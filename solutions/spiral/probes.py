"""Probes for `spiral`, run in the student's process. Each parameter names a student variable
(`inputs` is the check's fresh inputs); the returned dict is all its verdict sees."""
from __future__ import annotations

import torch

from autograder.probe_tools import figure_summary, fresh_outputs, watched_run

from .reference import SpiralNet, reference_steps


def split_tensors(X_train, y_train, X_val, y_val, X_test, y_test) -> dict:
    return dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test)


def fresh_model(SpiralNet, inputs) -> dict:
    """The student's class, built fresh with its defaults and with n_hidden=16."""
    fresh, data = fresh_outputs(SpiralNet, inputs["x"])
    return dict(data, n_params_16=sum(p.numel() for p in SpiralNet(n_hidden=16).parameters()),
                has_dropout=any(type(m).__name__ == "Dropout" for m in fresh.modules()),
                state=fresh.state_dict())


def two_steps(train_step, inputs) -> dict:
    """`train_step` run twice on the grader's network and batches."""
    losses, states = reference_steps(inputs, train_step)
    return dict(losses=losses, states=states)


def history(train_losses, val_losses, best_epoch, best_val_loss, model) -> dict:
    return dict(train_losses=[float(v) for v in train_losses], val_losses=[float(v) for v in val_losses],
                best_epoch=best_epoch, best_val_loss=float(best_val_loss), state=model.state_dict())


def evaluation(model, test_acc, test_preds) -> dict:
    return dict(state=model.state_dict(), test_acc=test_acc, test_preds=test_preds)


def figure(fig, train_losses, best_epoch) -> dict:
    return dict(figure=figure_summary(fig), n_epochs=len(train_losses), best_epoch=best_epoch)


def predict_on_meta(predict) -> dict:
    """`predict` given a CPU model, CPU points and the meta device: it must move both."""
    meta = torch.device("meta")
    net = SpiralNet().net
    return dict(run=watched_run(lambda model, criterion: predict(model, torch.zeros(5, 2), meta), net))


def predictions(predict, inputs) -> dict:
    """`predict` on the grader's weights, with the network left in training mode."""
    net = SpiralNet().net
    net.load_state_dict(inputs["init"])
    net.train()
    return dict(preds=predict(net, inputs["X"], torch.device("cpu")))


def restore_trained(SpiralNet, best_state) -> dict:
    """Hand-off after q3: the student's namespace gets the grader's trained model."""
    model = SpiralNet(n_hidden=100, dropout=0.2)
    model.load_state_dict(best_state)
    model.eval()
    return dict(model=model)
