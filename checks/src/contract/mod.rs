//! Tensor contracts of ONNX and safetensors models, and the comparison of candidate against baseline.
