"""`interp report`: the self-contained HTML page and `metrics.json`, one module per section.

`Report` (in `page`) holds the page and the metrics; each section module exposes
`add_<section>(report, model, info, prompt_sets, **options)`, which calls the method packages'
public API, appends its section and merges its `metrics.json` keys. Nothing outside this
package and the CLI imports it.
"""

from interp.report.judged import judged_examples_html, judged_table_html
from interp.report.page import BASELINE_CONDITIONS, Report, add_baseline, model_metrics, table_html

__all__ = [
    "BASELINE_CONDITIONS",
    "Report",
    "add_baseline",
    "judged_examples_html",
    "judged_table_html",
    "model_metrics",
    "table_html",
]
