"""Seeding a hub: the demo store from the data files in `seed/demo/`."""
