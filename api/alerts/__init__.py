"""Alert rules, their episodes and the service that runs them in the API."""
