"""Operations: Prometheus metrics for operators and the garbage-collection policy."""
