"""SIGTERM and SIGINT end a run at an optimizer-step boundary, with a checkpoint and a non-zero exit.

Schedulers (SLURM, Kubernetes) send SIGTERM before they kill a job; Ctrl+C sends SIGINT.
Lightning's own SIGTERM handler ends `fit` with a `SystemExit` whose code is 0 and saves nothing,
and its SIGINT handling exits 1 without a checkpoint. `StopOnSignal` replaces both while
Lightning runs: a signal only sets a flag; at the end of the next optimizer step (never between
the micro-batches of one) all ranks agree to stop, save the step (`checkpoints/step=N.ckpt`, with
`last.ckpt` pointing at it, a background save included: it is complete before the exit), print the
command that resumes the run, and exit with 128 + the signal number (143 for SIGTERM, 130 for
SIGINT: the shell's convention, which SLURM and torchrun report as the job's failure by that
signal). A second SIGINT interrupts at once (no checkpoint; Lightning exits 1). A signal during a
standalone validation (before or after fit) stops after it, without a new checkpoint.
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_prefopt.checkpointing.retention import save_checkpoint_now

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)
# Overrides that say where the run is and what it resumes from: the resume command sets its own.
LOCATION_KEYS = ("ckpt_path", "run_name", "hydra.run.dir")


class RunInterrupted(SystemExit):
    """The run stopped on a signal; the exit code is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class StopOnSignal(Callback):
    """Turn SIGTERM/SIGINT into a checkpoint at the next optimizer-step boundary and a non-zero exit."""

    def __init__(self, run_dir: Path, run_name: str | None) -> None:
        self.checkpoint = run_dir / "checkpoints" / "last.ckpt"
        self.resume = resume_command(run_name, run_dir)
        self.received: int | None = None
        self._step_at_batch_start = -1

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install()

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == self._step_at_batch_start:  # between micro-batches of one step
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        save_checkpoint_now(trainer, self.checkpoint)
        self._stop(trainer, f"saved {self.checkpoint} after step {trainer.global_step}. Resume with:\n  {self.resume}")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != "validate":  # validation during fit: stop at the next step boundary
            return
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            self._stop(trainer, f"during validation, so no new checkpoint was saved. Resume with:\n  {self.resume}")

    def _stop(self, trainer: Trainer, what: str) -> None:
        signum = self.received or signal.SIGTERM
        if trainer.is_global_zero:
            log.warning("Stopped by %s: %s", signal.Signals(signum).name, what)
        raise RunInterrupted(signum)

    def _install(self) -> None:
        """Replace the handlers Lightning has just registered (it restores the earlier ones at its teardown)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in HANDLED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self.received = signum
        log.warning(
            "Received %s: stopping at the end of this optimizer step (saving %s)%s",
            signal.Signals(signum).name, self.checkpoint,
            "; press Ctrl+C again to stop at once without saving" if signum == signal.SIGINT else "",
        )


def resume_command(run_name: str | None, run_dir: Path) -> str:
    """The command line that resumes this run: its own overrides, then where and `ckpt_path=last`."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [item for item in overrides if item.split("=")[0].lstrip("+~") not in LOCATION_KEYS]
    where = f"run_name={run_name}" if run_name else f"hydra.run.dir={run_dir}"
    return " ".join(["python -m lit_prefopt", *map(shlex.quote, [*kept, where, "ckpt_path=last"])])
