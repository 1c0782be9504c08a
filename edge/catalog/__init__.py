"""Catalog: items, categories, barcodes and variable-measure labels."""
