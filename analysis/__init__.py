"""Analysis of evaluation results: does tuned performance track base in-context performance?

load (results dirs -> validated table), pairs (seed means, tuned-vs-base pairing), stats,
correlations (H1), claims (per-task paired tests, new capabilities), tables, plots, report
(``run_analysis``). Reads results only; never imports jax, flax or t5x_like. See docs/analysis.md.
"""
