"""Plots and a Markdown report of one run folder, for a person to look at.

``run_report(RUN)`` reads what ``train`` and ``submit`` left in the run folder (``load``) and
writes ``RUN/report/*.png`` (``plots``) and ``RUN/report/report.md`` (``markdown``, last), which
embeds every plot:

=========================  ===================================================================
``oof_timeline.png``       out-of-fold predictions of each model (summary.json's models) and the
                           blend against the true time to failure along the train timeline, cycles shaded
``mae_by_cycle.png``       OOF MAE of each model per quake cycle (grouped bars)
``mae_by_ttf.png``         OOF MAE of each model per 2-second bin of the true time to failure
``lgbm_importance.png``    (when LightGBM is one of the models) LightGBM gain importance, mean and spread over seeds and folds
``lgbm_features.png``      each LightGBM feature against time to failure (FEATDIR/train.parquet)
``lgbm_curves.png``        LightGBM validation MAE per boosting round, a panel per fold, a line per seed
``NAME_history.png``       each network's training curves (nn, seq), a column of panels per fold, a line per run
``test_distribution.png``  test predictions against the distribution of the train target
``oof_vs_test.png``        each model's out-of-fold against its test predictions (KS statistic)
``drift_ks.png``           train against test, feature by feature (needs the feature folder)
``test_vs_truth.png``      test predictions against the true answers, where a truth file exists
=========================  ===================================================================

The feature and drift plots need the feature folder and the last plot a truth file; without them the report
says why in place of the plot. Any other missing or unreadable input is a one-line error.
"""

from labquake.report.load import RunData, load_run
from labquake.report.markdown import run_report
from labquake.report.plots import PLOTS, ttf_bins

__all__ = ["PLOTS", "RunData", "run_report", "load_run", "ttf_bins"]
