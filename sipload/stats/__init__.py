"""Per-call records, mergeable histograms, interval snapshots, the run directory."""
