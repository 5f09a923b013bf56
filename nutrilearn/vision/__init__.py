"""Images in, food predictions out: weights reader, network, preprocessing, runtimes, classifier.

Import the submodules you need. ``network``, ``keras_runtime`` and ``conversion`` import
TensorFlow (setup, training, evaluation); ``litert``, ``model_files`` and ``classifier``
do not (serving).
"""
