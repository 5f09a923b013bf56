"""Images in, food predictions out: weights reader, network, preprocessing, classifier.

Import the submodules you need; ``network`` and ``classifier`` import TensorFlow.
"""
