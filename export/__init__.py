"""ONNX export of a run's stripped student: parity, int8, latency against a budget."""
