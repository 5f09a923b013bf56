"""Streamlit glue shared by the pages: cached resources and the sidebar.

Kept apart from ``nutrilearn`` so that the package never imports Streamlit.
"""
