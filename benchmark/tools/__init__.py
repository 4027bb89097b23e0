"""Developer tools beside the pipeline: the performance bench, the compute estimate and its check."""
