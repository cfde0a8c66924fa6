"""The run's report, written at the end of every training session (``ganforge train`` hands
this callback to the Trainer; the report itself is the use wing's,
:mod:`ganforge.use.report`)."""
from __future__ import annotations

from ganforge.training.callbacks import Callback, TrainerT
from ganforge.use.report import write_report


class WriteReport(Callback):
    """Write ``RUN/report.html`` when a session ends (rank 0), after the run's own outputs
    (``ganforge train`` passes it to the Trainer first in the list, so its ``on_end`` runs
    last). A report is a courtesy: a failure to write it is one warning line and never fails
    or interrupts the training run."""

    every = 0

    def on_end(self, trainer: TrainerT) -> None:
        if not trainer.is_main:
            return
        try:
            write_report(trainer.run_dir)
        except Exception as e:  # noqa: BLE001 - never fail a finished training for its report
            msg = " ".join(str(e).split())[:200] or type(e).__name__
            trainer.note(f"warning: report.html not written: {msg}")
