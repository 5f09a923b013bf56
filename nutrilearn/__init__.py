"""NutriLearn: watch a food image classifier at work.

The package never imports Streamlit, and never imports TensorFlow at module import time
outside ``nutrilearn.vision.network`` / ``nutrilearn.vision.classifier`` (it costs ~5 s).
"""

__version__ = "0.1.0"

import os as _os

# MLflow prints "View run ... at: URL" on stdout for every run made against a tracking
# server; that would corrupt `nutrilearn ... --json` output and flood app logs.
_os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
