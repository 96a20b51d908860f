"""Review: blameless post-mortems with evidence-backed five whys, and incident metrics as data."""
