"""The conversion steps, one per module: a function from a typed input to a typed result, and a
``Step`` class that says whether it applies to an export, runs it on the shared
:class:`~converters.steps.base.ExportContext` and keeps its result there.

``hf2onnx``, ``torch2onnx``, ``optimize``, ``parity`` (+ ``parity-fp16``), ``onnx2fp16``,
``smooth``, ``onnx2int8``, ``accuracy``, ``portability``, ``golden``, ``onnx2trt``;
:mod:`converters.plan` orders them and :mod:`converters.pipeline` runs them, times them, and
writes the run state after each one.
"""
