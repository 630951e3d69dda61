"""FastAPI service: live indicators, dimension scores, live feeds and the dashboard."""
