"""Tests that drive JupyterLab in a real headless Chromium."""
