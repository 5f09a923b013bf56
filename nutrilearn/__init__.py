"""NutriLearn: watch a food image classifier at work.

The package never imports Streamlit, and never imports TensorFlow at module import time
outside ``nutrilearn.vision.network`` / ``nutrilearn.vision.classifier`` (it costs ~5 s).
"""

__version__ = "0.1.0"
