"""Mitigation: the lineage-driven circuit breaker (pause automation, quarantine partitions, pause Kafka)."""
