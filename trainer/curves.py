"""Training curves: TRL/transformers' own logging integrations (`report_to`: TensorBoard, W&B, ...) and the
loss curve kept beside the adapter as a plot, drawn from the trainer's log history after training."""

from __future__ import annotations

from pathlib import Path

from userlm.io import UserError, atomic_write_bytes

LOSS_CURVE = "loss.png"


def report_to_list(value: str) -> list[str]:
    """`none`, or comma-separated transformers integration names, checked before the model loads: a name
    transformers does not know, or one whose package is not installed, is a one-line error."""
    names = [n.strip() for n in value.split(",") if n.strip() and n.strip() != "none"]
    if not names:
        return []
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise UserError(f"report_to: unknown logging integration '{name}' "
                            f"(known: none, {', '.join(INTEGRATION_TO_CALLBACK)})")
        if name not in available:
            raise UserError(f"report_to={name}: its package is not installed (e.g. `pip install {name}`)")
    return names


def plot_loss_curve(log_history: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Train loss (and eval loss where logged) against the optimizer step, as a PNG; None when nothing was
    logged (a run shorter than logging_steps)."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for points, label, style in ((train, "train loss", "-"), (evals, "validation loss", "o--")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over target tokens)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def final_eval_loss(trainer) -> float:
    """The eval loss of the finished weights. With step-wise evaluation the trainer already evaluated them
    at the last step (transformers' DefaultFlowCallback); evaluating again repeats the same pass (20 s of
    the demo's training stage on 2 cores) for the same number."""
    state = trainer.state
    logged = [e for e in state.log_history if "eval_loss" in e]
    if logged and logged[-1].get("step") == state.global_step:
        return logged[-1]["eval_loss"]
    return trainer.evaluate()["eval_loss"]

