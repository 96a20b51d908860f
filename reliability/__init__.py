"""Open data reliability platform on Dagster."""
