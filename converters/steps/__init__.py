"""The conversion steps, one per module, each a function from a typed input to a typed result.

``hf2onnx``, ``torch2onnx``, ``optimize``, ``parity``, ``onnx2fp16``, ``onnx2int8``,
``accuracy``, ``onnx2trt``; :mod:`converters.pipeline` runs them, times them, and writes the
run state after each one.
"""
