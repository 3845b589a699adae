"""BiLSTM-CRF named-entity tagger.

The package's own modules are what serving needs, numpy and ONNX Runtime only:
the model directory (files), configuration, vocabulary, tags, the lean
runtime and the text pipeline. Everything that needs TensorFlow (network, CRF,
training, export, ensembles, evaluation, data and GloVe) lies in
nerserve.tagger.training. Serving imports it only when NER_BACKEND=tensorflow asks for
the reference backend (nerserve.tagger.backends, for the parity tests and benchmarks),
never with the default onnx (tests/test_app.py checks).
"""
