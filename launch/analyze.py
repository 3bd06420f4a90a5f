"""Correlation analysis of evaluation results: tables, figures and a report.

  python -m launch.analyze --results=DIR[,DIR...] --output_dir=OUT [--subset=all,seen,...]

Reads each DIR/scores.csv (+ DIR/predictions/), writes OUT/correlations.{csv,md,tex},
OUT/per_task.*, OUT/paired_tests.*, OUT/new_capabilities.*, OUT/figures/*.{png,pdf},
OUT/report.md and OUT/report.html, and prints the main correlation table. See docs/analysis.md.
"""

from absl import flags

from analysis import correlations, pairs, report
from t5x_like.errors import one_line_errors, run_app

_RESULTS = flags.DEFINE_list("results", None, "Results directories (or scores.csv files), comma-separated.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where tables, figures and the report go.")
_SUBSET = flags.DEFINE_list("subset", list(correlations.DEFAULT_SUBSETS),
                            "Task subsets: all, seen, held_out, nlu, nlg, clusters (every cluster "
                            "with >= --min_cluster_tasks tasks), cluster:<name>.")
_TUNED = flags.DEFINE_list("tuned_settings", list(pairs.TUNED_SETTINGS),
                           "Main tuned settings analysed, with their variants (role tuned, main_setting in "
                           "this list: t5x_like/settings.py); partners are the base-role rows.")
_MIN_CLUSTER_TASKS = flags.DEFINE_integer("min_cluster_tasks", 5, "Smallest cluster correlated.")
_N_BOOTSTRAP = flags.DEFINE_integer("n_bootstrap", 2000, "Bootstrap resamples for the CIs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the bootstrap resampling.")
_ALPHA = flags.DEFINE_float("alpha", 0.05, "Significance level of the per-task claims.")
flags.mark_flags_as_required(["results", "output_dir"])


def main(argv):
    del argv
    with one_line_errors("analyze"):
        table = report.run_analysis(_RESULTS.value, _OUTPUT_DIR.value, _SUBSET.value,
                                    tuned_settings=_TUNED.value,
                                    min_cluster_tasks=_MIN_CLUSTER_TASKS.value,
                                    n_bootstrap=_N_BOOTSTRAP.value, seed=_SEED.value, alpha=_ALPHA.value)
    print(report.main_table_text(table))


if __name__ == "__main__":
    run_app(main, "analyze")
