"""Out-of-bag scores: an honest estimate of test error for the price of one fit.

With ``bootstrap=True`` every member leaves out about a third of the rows; predicting
each row with only the members that did not draw it gives ``oob_score_``, an estimate
of the test score that needs no held-out data and no refitting. This example fits
``NeuralBaggingRegressor`` on scikit-learn's diabetes data for growing ensembles and
puts ``oob_score_`` beside 5-fold cross-validation (five more fits) and a held-out test
score, with the time each took. The picture is saved as
``examples/images/oob_vs_cv.png``.

    python examples/oob_vs_cv.py
"""

import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, cross_val_score, train_test_split

from skensemble import NeuralBaggingRegressor

warnings.filterwarnings("ignore", category=ConvergenceWarning)
# With 5-10 members a few rows were drawn by every member and have no OOB estimate;
# they are left out of oob_score_ (scikit-learn warns about that, and so do we).
warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

sizes = [5, 10, 20, 40]
rows = []
for n in sizes:
    est = NeuralBaggingRegressor(n_estimators=n, hidden_layer_sizes=(32,), alpha=1.0,
                                 bootstrap=True, oob_score=True, max_iter=150, batch_size=32,
                                 learning_rate_init=0.003, random_state=0)
    start = time.perf_counter()
    est.fit(X_train, y_train)
    oob_time = time.perf_counter() - start
    oob, test = est.oob_score_, est.score(X_test, y_test)
    start = time.perf_counter()
    cv = cross_val_score(est.set_params(oob_score=False), X_train, y_train,
                         cv=KFold(5, shuffle=True, random_state=0))
    cv_time = time.perf_counter() - start
    rows.append((n, oob, cv.mean(), cv.std(), test, oob_time, cv_time))

print(f"{'members':>8}{'OOB R^2':>10}{'5-fold CV R^2':>18}{'test R^2':>10}{'OOB s':>8}{'CV s':>8}")
for n, oob, cvm, cvs, test, t_oob, t_cv in rows:
    print(f"{n:>8}{oob:>10.3f}{cvm:>11.3f} +/- {cvs:.3f}{test:>10.3f}{t_oob:>8.2f}{t_cv:>8.2f}")

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(sizes, [r[1] for r in rows], "o-", label="out-of-bag R² (1 fit)")
ax.errorbar(sizes, [r[2] for r in rows], [r[3] for r in rows], fmt="s--", capsize=3,
            label="5-fold CV R² (5 fits)")
ax.plot(sizes, [r[4] for r in rows], "^:", label="held-out test R²")
ax.set_xscale("log", base=2)
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.set_xlabel("members")
ax.set_ylabel("R²")
ax.set_title("Diabetes: out-of-bag vs cross-validation estimates")
ax.legend()
fig.tight_layout()
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images" / "oob_vs_cv.png"
out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(out, dpi=110)
print(f"saved {out}")
