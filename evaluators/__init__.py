"""Named, pluggable evaluators that score how human a simulated user is, each with a bootstrap 95% CI."""
