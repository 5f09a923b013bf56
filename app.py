"""NutriLearn: Streamlit entry point. Run with ``streamlit run app.py``."""

from pathlib import Path

import streamlit as st

from nutrilearn_app import state

st.set_page_config(page_title="NutriLearn", page_icon="🥗", layout="wide")

HERE = Path(__file__).parent
PAGES = [  # (file, title, icon); pages that are not there yet are simply not listed
    ("pages/analyze.py", "Analyze", "📷"),
    ("pages/meals.py", "Meals", "🍽️"),
    ("pages/monitoring.py", "Monitoring", "📈"),
    ("pages/drift.py", "Drift", "🧭"),
    ("pages/models.py", "Models", "🏷️"),
]

state.sidebar()
navigation = st.navigation(
    [st.Page(str(HERE / f), title=t, icon=i) for f, t, i in PAGES if (HERE / f).is_file()]
)
navigation.run()
with st.sidebar:
    state.tracking_status()
