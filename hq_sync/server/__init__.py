"""The reference HQ server: `api/` (HTTP: admin and hub endpoints), `console/` (the browser back office),
`service/` (one module per capability), `storage/` (database adapter and schema)."""
