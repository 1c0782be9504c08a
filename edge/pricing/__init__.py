"""Pricing: the pure basket pricer the quote and sale paths share."""
