"""The tablet's pages, one module per menu entry (edge/ui/nav.py), each with its templates under
templates/<page>/ and its text in locale/<lang>/LC_MESSAGES/<page>.po."""
