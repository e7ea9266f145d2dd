"""What a run says: summary.py (figures from a run's rows), markdown.py and html.py (report.md,
report.html), svg.py (the histograms in them), compare.py (two runs side by side)."""
