"""The report stage: tables, statistics and figures from the records and plan under a results
folder (entry point: :func:`benchmark.report.build.build_report`). It never imports torch."""
