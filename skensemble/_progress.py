"""Progress output over epochs: a tqdm bar for ``verbose=1``, one line per epoch above.

Owns only what is shown; must not decide anything about training.
"""

import sys


class _Progress:
    """Epoch progress: mean training loss and members still training."""

    def __init__(self, total, verbose):
        self.verbose = int(verbose)
        self.epoch = 0
        self.bar = None
        if self.verbose == 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="epochs", unit="epoch", file=sys.stderr,
                            leave=True)  # the finished bar stays in logs

    def update(self, mean_loss, n_active, n_members, mean_val_loss=None):
        """Report one finished epoch."""
        self.epoch += 1
        if self.verbose == 0:
            return
        if self.bar is not None:
            post = {"loss": f"{mean_loss:.4g}", "training": f"{n_active}/{n_members}"}
            if mean_val_loss is not None:
                post["val_loss"] = f"{mean_val_loss:.4g}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        else:
            line = (f"Epoch {self.epoch}: mean loss {mean_loss:.6f}, members training "
                    f"{n_active}/{n_members}")
            if mean_val_loss is not None:
                line += f", mean validation loss {mean_val_loss:.6f}"
            print(line)

    def close(self):
        """Close the bar, leaving its final state on screen (no-op without one)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress(total, verbose):
    """Progress reporter for ``total`` epochs at verbosity ``verbose``."""
    return _Progress(total, verbose)
