"""Measuring inference: backends, chunking, timing and interleaved trials, the correctness check, speed-ups, the machine record, the results CSV."""
