"""Export Hugging Face / PyTorch models to ONNX, INT8 and TensorRT and write Triton repositories.

Entry points: ``python -m tritonstack.converters export ...`` (CLI) and :func:`converters.api.export`.
"""
