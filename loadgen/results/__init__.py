"""Results: statistics and their HDR histograms, the mergeable summary, the text, JUnit and HTML reports,
the Prometheus collector.  Imports nothing above it."""
