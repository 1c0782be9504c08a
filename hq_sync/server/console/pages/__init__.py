"""The console's pages: one module each, listing its handlers in `ROUTES`."""
