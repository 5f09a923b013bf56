"""NutriLearn: Streamlit entry point. Run with ``streamlit run app.py``."""

from pathlib import Path

import streamlit as st

from nutrilearn_app import login, state

st.set_page_config(page_title="NutriLearn", page_icon="🥗", layout="wide")

HERE = Path(__file__).parent
PAGES = [  # (file, title, icon, what it needs: nutrilearn.auth.PERMISSIONS); missing files are not listed
    ("pages/analyze.py", "Analyze", "📷", "analyze"),
    ("pages/meals.py", "Meals", "🍽️", "own_meals"),
    ("pages/monitoring.py", "Monitoring", "📈", "view_monitoring"),
    ("pages/photos.py", "Photos", "🖼️", "view_monitoring"),
    ("pages/drift.py", "Drift", "🧭", "view_monitoring"),
    ("pages/label.py", "Label", "🔖", "label"),
    ("pages/models.py", "Models", "🏷️", "view_monitoring"),
]

login.login_gate()  # with a login provider and nobody (valid) logged in: the login screen only
state.sidebar()
navigation = st.navigation(
    [st.Page(str(HERE / f), title=t, icon=i) for f, t, i, need in PAGES
     if (HERE / f).is_file() and state.may(need)]
)
# The tracking block is drawn before the page (so it is there when a page stops early on an
# empty state: st.stop() discards anything drawn after it) and redrawn after the page, in the
# same place, to count what the page just logged.
tracking_slot = st.sidebar.empty()
with tracking_slot.container():
    state.tracking_status()
navigation.run()
with tracking_slot.container():
    state.tracking_status()
state.settle_heap(navigation.url_path)
