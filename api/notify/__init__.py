"""Notifications of alert episodes: messages, webhooks, e-mail, retries and dead letters."""
