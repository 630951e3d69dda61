"""Daily and monthly reports per district and for the regency (docs/reports.md)."""
