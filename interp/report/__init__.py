"""`interp report`: the self-contained HTML page and `metrics.json`, one module per section.

`Report` (in `page`) holds the page and the metrics; each section module exposes
`add_<section>(report, model, info, prompt_sets, **options)`, which calls the method packages'
public API, appends its section and merges its `metrics.json` keys. Nothing outside this
package and the CLI imports it.
"""

from interp.report.budget import (
    QUICK,
    Calibration,
    Sizes,
    calibrate,
    choose_sizes,
    estimate_seconds,
)
from interp.report.counts import RateCount
from interp.report.judged import judged_examples_html, judged_table_html
from interp.report.page import BASELINE_CONDITIONS, Report, add_baseline, model_metrics, table_html
from interp.report.prompts import PromptSets, prompt_sets_of, texts_by_kind

__all__ = [
    "BASELINE_CONDITIONS",
    "QUICK",
    "Calibration",
    "PromptSets",
    "RateCount",
    "Report",
    "Sizes",
    "add_baseline",
    "calibrate",
    "choose_sizes",
    "estimate_seconds",
    "judged_examples_html",
    "judged_table_html",
    "model_metrics",
    "prompt_sets_of",
    "table_html",
    "texts_by_kind",
]
