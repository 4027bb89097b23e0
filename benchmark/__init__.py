"""Benchmark suite for posterior-collapse remedies in variational autoencoders."""
