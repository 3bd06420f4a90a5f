"""Analysis of evaluation results: does tuned performance track base in-context performance?

load (results dirs -> validated table), pairs (seed means, tuned-vs-base pairing), stats, chance
(scores relative to chance), correlations (H1, raw and chance-corrected), claims (per-task paired tests, new capabilities), tables, plots, report
(``run_analysis``). Reads results only; never imports jax, flax or model code (of
t5x_like only the stdlib-only io_utils, for atomic writes and jsonl). See docs/analysis.md.
"""
