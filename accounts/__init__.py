"""Energy, water and carbon accounts: what the readings add up to, per period, building and
category, against quotas, standards and the five-year baseline (issue 11)."""
