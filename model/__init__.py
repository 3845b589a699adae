"""BiLSTM-CRF named-entity tagger.

The package's own modules are what serving needs, numpy and ONNX Runtime only:
the model directory (files), configuration, vocabulary, tags and the lean
runtime. Everything that needs TensorFlow (network, CRF, training, export,
ensembles, evaluation, data and GloVe) lies in model.training, which serving
never imports.
"""
