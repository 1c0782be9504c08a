"""HQ's HTTP API: `admin.py` (bearer-token admin calls), `sync.py` (signed hub calls), `app.py` (the app)."""
