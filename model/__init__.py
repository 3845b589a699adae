"""BiLSTM-CRF named-entity tagger: data, vocabulary, network, training, export.

Importing this package does not import TensorFlow; only the modules that build
or train the network do (network, crf, train, evaluate, export).
"""
