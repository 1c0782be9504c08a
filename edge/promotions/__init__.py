"""Promotions: the rule format (rules.py), the pure engine (engine.py), what it is told and reports
besides line amounts (outcome.py), explanation texts (explain.py), the rule book cache, coupons and
usage in the database (repository.py), and the return clawback policy (clawback.py).
docs/promotions.md describes the format with examples."""
