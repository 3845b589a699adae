"""Everything that builds, trains, exports or scores the network with TensorFlow.

Serving never imports this package (nerserve.tagger.runtime runs the exported model with
numpy and ONNX Runtime). Importing the package itself imports no TensorFlow.
"""
