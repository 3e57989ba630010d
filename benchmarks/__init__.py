"""Benchmarks of ukd-compress: quality, training cost, inference, serving."""
