"""Local stand-ins for the outside world's model servers (OpenAI-compatible, TensorFlow Serving) and a tiny ONNX
language model with its tokenizer; imported by tests as ``fakes.<module>`` and by benchmarks as
``tests.fakes.<module>``."""
